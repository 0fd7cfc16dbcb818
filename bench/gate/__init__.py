"""The regression gate: a baseline run and a current run compared cell by cell, each metric at its threshold."""
