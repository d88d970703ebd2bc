from bridges.commerce_mock.cli import main

main()
