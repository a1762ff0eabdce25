from ftjax.cli import main

main()
