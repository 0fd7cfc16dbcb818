"""Diagnostics beside the pipeline: speed parity with a plain loop, CPU fast paths."""
