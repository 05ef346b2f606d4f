from docingest.cli import main

main()
