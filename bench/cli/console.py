"""What every command shares: the consoles, the --debug state, input errors as one line each (exit 2), number
and duration formatting, and finding and loading a suite."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from bench.api import SUITE_DIRS, set_threads  # noqa: F401 - the API's, shared by the commands
from bench.core.errors import InputError
from bench.core.numbers import format_number
from bench.suite.expand import expand
from bench.suite.load import find_suite, load_suite

console = Console()

if not console.is_terminal:  # piped or in CI: wide enough that tables are not cut
    console = Console(width=200)

err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 200)

STATE = {"debug": False}

FLOPS_NOTE = "MACs = multiply-accumulates; FLOPs = 2 × MACs (published 'FLOPs' tables usually give MACs)."


def fail_input(exc: InputError) -> NoReturn:
    if STATE["debug"]:
        raise exc
    for line in str(exc).splitlines():
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


def load_cells(suite: str, profile: str | None, overrides: list[str] | None = None):
    path = find_suite(suite, SUITE_DIRS)
    loaded = load_suite(path, profile, overrides)
    return loaded, expand(loaded)


def fmt(value: Any, digits: int = 3) -> str:
    return format_number(value, digits)


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
