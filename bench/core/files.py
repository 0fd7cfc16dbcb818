"""Files written atomically, and a file's content hash.

A file is written to a temporary name in the same folder, flushed, fsynced and renamed over the target,
and the folder is fsynced after the rename, so a reader (or a resumed run) sees either the old complete
file or the new complete one, after a crash too. Every stage that writes (the training loop's checkpoint, the store, the report) writes through here.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from bench.core.errors import StorageError


def _file_mode() -> int:
    """The mode a plainly created file gets (0o666 less the umask); mkstemp's own 0o600 would hide
    results from the other users of a shared machine."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def atomic_write(path: Path, write: Callable[[Any], None], *, binary: bool = False) -> None:
    """Write `path` atomically: `write(fh)` fills a temporary file in the same folder, which is flushed,
    fsynced and renamed over `path`, then the folder is fsynced. On any failure (a full disk included) the temporary file is removed
    and `path` keeps its old content; an OSError is raised as a `StorageError` naming the file."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, _FILE_MODE)
        stream: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")
        with stream as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise StorageError(path, exc) from exc
        raise


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable: a file renamed into place survives a power cut only once its
    directory's entry is on disk too. A file system that cannot sync a directory is let be."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


@lru_cache(maxsize=64)
def _sha256_file(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_file(str(path), st.st_size, st.st_mtime_ns)


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON file's object, or {} when it is missing, unreadable or not an object (a run's optional metadata)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
