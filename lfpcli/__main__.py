from lfpcli.cli.app import main

main()
