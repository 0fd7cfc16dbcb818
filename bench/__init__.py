"""bench: benchmark and compare image-classification models.

Data flows one way: suite YAML -> validated Suite (bench.suite) -> expanded cells (bench.cells)
-> runner (bench.runner) -> per-cell measurements (bench.measure) -> results store (bench.store).
"""

import os as _os

# bench never reaches a model hub: models are built with random init or from a local file.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TIMM_OFFLINE", "1")

__version__ = "0.1.0"
