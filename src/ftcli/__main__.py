from ftcli.cli.app import main

main()
