from tune3d.cli import main

main()
