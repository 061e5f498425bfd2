"""The learning curves while a run trains: redrawn at each checkpoint (curves.py draws them)."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from .curves import save_learning_curves

log = logging.getLogger("tunesuite")


class CurvesCallback(TrainerCallback):
    """Redraws OUT/learning_curves.png at each checkpoint, so a long run can be looked at while it trains."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            try:
                save_learning_curves(state.log_history, Path(args.output_dir))
            except OSError as e:  # a full disk fails the next checkpoint, not this picture
                log.warning("learning curves not drawn: %s", e)
