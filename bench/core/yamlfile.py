"""Safe YAML reading that remembers where each value came from.

Errors in a suite must name the file and line of the offending field, so loading keeps a map from each
value's path (e.g. ``("models", 2, "resolution")``) to its line. Only YAML's safe subset is accepted:
tags that would construct Python objects are rejected, and duplicate keys are an error rather than
silently keeping the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.core.errors import InputError

LineMap = dict[tuple, int]


def _walk(node: yaml.Node, path: tuple, lines: LineMap, file: str, line: int | None = None) -> None:
    # A mapping value is located at its key's line (`exclude:`), not where a block value starts below it.
    lines[path] = line if line is not None else node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise InputError(
                    f"duplicate key '{key}' (first at line {seen[key]})",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    hint="keep one of them",
                )
            seen[key] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, file, line=key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, file)


def load_yaml(path: str | Path) -> tuple[Any, LineMap]:
    """Read a YAML file with the safe loader; return (data, {path tuple: line number})."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", file=path, hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read file ({exc})", file=path) from None
    return loads_yaml(text, file=str(path))


def loads_yaml(text: str, *, file: str = "<string>") -> tuple[Any, LineMap]:
    """Parse YAML text; see `load_yaml`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:  # a tag bench refuses (ConstructorError), or a syntax error
        tag = isinstance(exc, yaml.constructor.ConstructorError)
        mark = exc.problem_mark if tag else (exc.problem_mark or exc.context_mark)
        raise InputError(
            f"YAML tag not allowed ({exc.problem})" if tag else f"YAML syntax error: {exc.problem or exc.context}",
            file=file,
            line=mark.line + 1 if mark else None,
            hint="suites are plain data: remove the '!' tag"
            if tag
            else "check indentation, colons and quotes on that line",
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"YAML error: {exc}", file=file) from None
    lines: LineMap = {}
    if node is not None:
        _walk(node, (), lines, file)
    return data, lines


def line_of(lines: LineMap, path: tuple) -> int | None:
    """The line of `path`, or of its closest ancestor that has one."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
