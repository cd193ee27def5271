"""`python -m tidings`: the same command line as the `tidings` script."""

from tidings.cli.main import main

main()
