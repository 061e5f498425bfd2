"""Which mode for my data: a run estimated before it trains, `--mode auto`, and `compare` (modes side by side)."""
