"""`python -m bench` works like the `bench` command."""

from bench.cli import main

main()
