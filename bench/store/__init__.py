"""The results store: run directories (one JSON per cell, results.csv), baselines, and seed aggregation."""

from bench.store.run_store import RunStore

__all__ = ["RunStore"]
