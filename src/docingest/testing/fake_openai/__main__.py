from docingest.testing.fake_openai.cli import main

main()
