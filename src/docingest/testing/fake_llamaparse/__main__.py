from docingest.testing.fake_llamaparse.cli import main

main()
