"""`bench list models` and `bench list suites`."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from bench.cli.console import (
    SUITE_DIRS,
    console,
)
from bench.core.errors import InputError
from bench.models import get_entry, list_models
from bench.suite.load import load_suite


def list_models_cmd(family: str | None = typer.Option(None, help="Only this family.")) -> None:
    """Registered models with family, source and native resolution."""
    table = Table(title="models (any timm or torchvision model also works as timm:NAME / torchvision:NAME)")
    for col in ("name", "family", "source", "upstream", "native res"):
        table.add_column(col)
    for name in list_models(family):
        e = get_entry(name)
        table.add_row(e.name, e.family, e.source, e.upstream, str(e.native_resolution))
    console.print(table)


def list_suites_cmd() -> None:
    """Suites in ./suites (and the package's suites folder)."""
    table = Table(title="suites")
    for col in ("name", "file", "models", "profiles", "description"):
        table.add_column(col, overflow="fold")
    seen = set()
    for folder in SUITE_DIRS:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                s = load_suite(path, profile=None)
                table.add_row(
                    s.name,
                    str(path),
                    str(len(s.models)),
                    ", ".join(s.profiles),
                    s.description.strip().splitlines()[0] if s.description.strip() else "",
                )
            except InputError as exc:
                table.add_row(path.stem, str(path), "—", "—", f"[red]invalid: {escape(exc.format())}[/]")
    console.print(table)
