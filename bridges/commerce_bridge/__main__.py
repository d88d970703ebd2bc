from bridges.commerce_bridge.cli import main

main()
