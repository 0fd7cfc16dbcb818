"""Running cells: one cell (cell), the sweep over a plan (sweep), epoch sweeps (epochs), process isolation
(isolation) and where cells run (executors: local, ray)."""
