"""The `bench` command line (Typer + rich): a module per command group, thin over the library."""

from bench.cli.app import app, main

__all__ = ["app", "main"]
