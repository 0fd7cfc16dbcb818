"""Number formatting shared by the console tables and the reports: 3 significant digits, '—' for none."""

from __future__ import annotations

import math
from typing import Any


def format_number(value: Any, digits: int = 3) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):  # e.g. the allowed change of a metric whose threshold is 'off'
            return "∞" if value > 0 else "-∞"
        if value == 0:
            return "0"
        mag = math.floor(math.log10(abs(value)))
        return f"{value:.{max(0, digits - 1 - mag)}f}" if mag < digits else f"{value:,.0f}"
    return str(value)
