"""bench: benchmark and compare image-classification models.

Data flows one way: suite YAML -> validated suite (bench.suite) -> cells -> execution (bench.execution)
-> measurements (bench.measure) -> results store (bench.store) -> report (bench.report) and gate
(bench.gate); docs/architecture.md draws the layers. The extension points are importable from here:
`from bench import register_model, register_measurement, register_section, register_dataset`. The Python
API too: `bench.run`, `bench.load`, `bench.compare`, `bench.Run`, `bench.Comparison` (bench.api,
docs/library.md). They are looked up on first use, so `import bench` stays light (no torch).
"""

import os as _os
from importlib import import_module as _import_module
from typing import Any as _Any

# bench never reaches a model hub: models are built with random init or from a local file.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TIMM_OFFLINE", "1")

__version__ = "0.1.0"

# the public extension points: name -> the module that defines it
_PUBLIC = {
    "register_model": "bench.models.registry",
    "register_source": "bench.models.builders",
    "register_measurement": "bench.measure.registry",
    "register_metric": "bench.measure.catalogue",
    "Measurement": "bench.measure.base",
    "CellContext": "bench.measure.base",
    "Settings": "bench.measure.settings",
    "Metric": "bench.core.metric",
    "register_section": "bench.report.sections",
    "register_dataset": "bench.data.base",
    # the Python API (docs/library.md)
    "run": "bench.api",
    "load": "bench.api",
    "compare": "bench.api",
    "Run": "bench.api",
    "Comparison": "bench.api",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> _Any:
    if name in _PUBLIC:
        return getattr(_import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
