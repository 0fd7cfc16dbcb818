"""The lowest layer: plain data and helpers every stage uses (errors, files, YAML, statistics, the cell and
its result, metric specs). No torch, and no import of any other bench package."""
