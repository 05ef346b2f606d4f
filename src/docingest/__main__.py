from docingest.cli import app

app()
