"""`train`: settings and strategies (schemas, no torch), the loop (the measurement), its strategies' losses and
samplers, and the classification metrics."""
