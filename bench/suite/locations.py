"""Where a value of a suite came from: a field path as text (`models[2].weights`) and its line in the file.

Errors raised after validation point at the line of the active profile's override when the field was
set there, else at the line in the suite itself.
"""

from __future__ import annotations

from bench.core import axes as axis_paths
from bench.core.yamlfile import LineMap, line_of


def dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_for(lines: LineMap, path: tuple, profile: str | None) -> int | None:
    """Prefer the line inside the active profile's override, if the field was set there."""
    candidates = [tuple(path)]
    # a dotted axis may be written nested in YAML ({train: {lr: [..]}}): look it up split, too
    split = tuple(q for p in path for q in (p.split(".") if axis_paths.is_dotted(p) else [p]))
    if split != tuple(path):
        candidates.append(split)
    for candidate in candidates:
        if profile is not None:
            prof_path = ("profiles", profile) + candidate
            if prof_path in lines:
                return lines[prof_path]
        if candidate in lines:
            return lines[candidate]
    return line_of(lines, tuple(path))
