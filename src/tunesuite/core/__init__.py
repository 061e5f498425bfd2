"""The core: run config (parse once), modes, the Trainer wrapper, checkpoints, the frozen-feature cache."""
