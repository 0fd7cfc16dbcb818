"""Files bench ships beside its code: the suites and the report templates.

They live at the top of the repository (`suites/`, `report_templates/`), where a reader looks for them,
and the wheel packages them as `bench.suites` and `bench.report_templates` (pyproject.toml maps the
folders), so an installed bench finds them as well as a checkout does.
"""

from __future__ import annotations

import importlib
from pathlib import Path

SHIPPED = ("suites", "report_templates")


def shipped_dir(name: str) -> Path:
    """The folder of a shipped resource: the installed package's copy, else the checkout's."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped resource {name!r} (one of {', '.join(SHIPPED)})")
    try:  # a data-only (namespace) package: its folder is on its __path__
        for folder in importlib.import_module(f"bench.{name}").__path__:
            if Path(folder).is_dir():
                return Path(folder)
    except ModuleNotFoundError:  # a checkout on sys.path without an install
        pass
    return Path(__file__).resolve().parents[2] / name
