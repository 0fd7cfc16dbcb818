"""Errors a user can act on.

`InputError` is for bad input (a suite, a weights file, a results directory): the CLI prints it as one
short line naming the place (file, line, field) and the fix, with exit code 2 and no traceback.
`SkipCell` is raised inside a measurement when the cell cannot run here (e.g. a precision the device
does not support): the cell is recorded as skipped with the reason, not as failed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class BenchError(Exception):
    """Base class of bench's own errors: their message is what a user reads (no traceback)."""

    exit_code = 1


class InputError(BenchError):
    """Bad input, reported as `file:line: field: message (hint)`; exit code 2."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.hint = hint
        super().__init__(self.format())

    @classmethod
    def many(cls, errors: list[InputError]) -> InputError:
        """Several problems found together, reported together as one error (one line each)."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        combined = cls(first.message, file=first.file, line=first.line, field=first.field, hint=first.hint)
        combined.others = errors[1:]
        combined.args = (combined.format(),)
        return combined

    others: list[InputError] = []

    def __str__(self) -> str:
        return "\n".join([self.format()] + [e.format() for e in self.others])

    def format(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        parts = [p for p in (where, self.field) if p]
        text = ": ".join(parts + [self.message]) if parts else self.message
        if self.hint:
            text += f" — {self.hint}"
        return text


class SkipCell(BenchError):
    """Raised by a measurement when the cell cannot run on this device; recorded as skipped."""


class Diverged(BenchError):
    """The training loss became NaN or infinite: the cell fails with where it happened."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(
            f"diverged at epoch {epoch} step {step} (loss {loss}) — lower the learning rate or set grad_clip"
        )


class StorageError(BenchError):
    """A results file could not be written (disk full, permissions): the run stops, nothing half-written
    is left, and the finished cells can be resumed. Exit code 1."""

    exit_code = 1

    def __init__(self, path: str | Path, exc: OSError) -> None:
        self.path, self.errno = str(path), exc.errno
        super().__init__(f"cannot write {path}: {exc.strerror or exc}")


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean 'x'?" hint for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
