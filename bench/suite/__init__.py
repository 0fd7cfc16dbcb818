"""Suites: the YAML schema, loading (profiles, overrides), error translation, and expansion into cells.

Validating a suite imports torch only where it must (a `timm:`/`torchvision:` name outside the
catalogue, a model-keyword axis, a weights file, a per-device default profile).
"""

from bench.suite.expand import expand
from bench.suite.load import find_suite, load_suite, parse_overrides
from bench.suite.schema import EXECUTORS, ISOLATION_MODES, Matrix, ModelSpec, Suite

__all__ = [
    "EXECUTORS",
    "ISOLATION_MODES",
    "Matrix",
    "ModelSpec",
    "Suite",
    "expand",
    "find_suite",
    "load_suite",
    "parse_overrides",
]
