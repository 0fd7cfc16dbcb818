"""A cell's result as plain data: config, status, reason, measurements; `to_dict`/`from_dict`.

Status is one of `ok`, `failed` (an exception: its type and message are the reason, the traceback is
kept), `skipped` (the cell cannot run here, e.g. a precision the device lacks). Each measurement has
its own status too, so a cell whose speed was skipped still keeps its params and FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.core.cell import Cell
from bench.core.errors import InputError

STATUSES = ("ok", "failed", "skipped")


@dataclass
class CellResult:
    cell: Cell
    status: str
    reason: str | None = None
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)
    traceback: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    isolation: str | None = None  # "process": run in its own child process; "none": in the runner's
    executor: str | None = None  # where it ran: "local" (this machine) or "ray" (a Ray task; bench.execution.executors)
    retries: int | None = None  # Ray: how many times the task was run again after its worker was lost

    @property
    def id(self) -> str:
        return self.cell.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "config": self.cell.to_dict(),
            "measurements": self.measurements,
            "traceback": self.traceback,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "isolation": self.isolation,
            "executor": self.executor,
            "retries": self.retries,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        cell = Cell.from_dict(data["config"])
        if cell.id != data["id"]:
            raise ValueError(f"cell file id {data['id']} does not match its config (hash {cell.id})")
        if data["status"] not in STATUSES:
            raise ValueError(f"unknown status {data['status']!r}")
        return cls(
            cell=cell,
            status=data["status"],
            reason=data.get("reason"),
            measurements=data.get("measurements") or {},
            traceback=data.get("traceback"),
            started_at=data.get("started_at"),
            duration_s=data.get("duration_s"),
            isolation=data.get("isolation"),
            executor=data.get("executor"),
            retries=data.get("retries"),
        )

    def flat_row(self) -> dict[str, Any]:
        """One flat CSV row: config columns, then `<measurement>.<key>` columns of scalar values.

        Raw timing samples and per-op breakdowns stay in the cell JSON; lists of names are joined by ';'.
        """
        c = self.cell
        row: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "reason": self.reason or "",
            "model": c.model,
            "family": c.family,
            "resolution": c.resolution,
            "batch_size": c.batch_size,
            "precision": c.precision,
            "channels_last": c.channels_last,
            "compile": c.compile,
            "seed": c.seed,
            "strategy": c.strategy,
            "num_classes": c.num_classes,
            "weights": c.weights or "",
            "duration_s": self.duration_s,
            "isolation": self.isolation or "",
            "executor": self.executor or "",
            "retries": self.retries if self.retries is not None else "",
        }
        for path, value in c.axes.items():  # dotted-path axes the suite swept: one column each
            row[f"axis.{path}"] = value if isinstance(value, (bool, int, float, str)) or value is None else repr(value)
        for name in c.measure:
            data = self.measurements.get(name, {})
            row[f"{name}.status"] = data.get("status", "")
            for key, value in data.items():
                if key == "status":
                    continue
                if isinstance(value, (bool, int, float, str)) or value is None:
                    row[f"{name}.{key}"] = value
                elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                    row[f"{name}.{key}"] = ";".join(value)
        return row


SYNTHETIC_NOTICE = "these results come from a synthetic stand-in, not the real data"


def synthetic_datasets(results) -> list[str]:
    """The synthetic datasets that any of `results` trained on (empty when the data was real)."""
    found = set()
    for r in results:
        train = r.measurements.get("train", {})
        if train.get("synthetic_data"):
            found.add(str(train.get("dataset")))
    return sorted(found)


def evaluated_on(results) -> str | None:
    """Where the training cells' reported accuracy figures come from: 'test' (the held-out test set),
    'validation' (a run made before bench had one: the images that selected the checkpoint were also
    reported on), 'mixed', or None when nothing trained. Runs of different kinds are not compared."""
    kinds = {
        (r.measurements.get("train") or {}).get("evaluated_on", "validation")
        for r in results
        if (r.measurements.get("train") or {}).get("status") == "ok"
    }
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def refuse_mixed_evaluation(runs: list[tuple[str, list]]) -> None:
    """An input error when runs' accuracy figures come from different sets (validation before the held-out
    test set, test after): comparing them would mix an optimistic figure with an honest one."""
    kinds = {label: evaluated_on(results) for label, results in runs}
    trained = {k for k in kinds.values() if k is not None}
    if len(trained) > 1:
        detail = ", ".join(f"{label}: {kind}" for label, kind in kinds.items() if kind is not None)
        raise InputError(
            f"these runs report accuracy on different image sets ({detail}); a run made before the held-out "
            "test set reported the validation images that also chose its checkpoint",
            hint="run the baseline again with this version of bench (bench baseline save), then compare",
        )
