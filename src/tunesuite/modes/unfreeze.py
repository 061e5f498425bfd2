"""Freeze-then-unfreeze (frozen mode's --unfreeze-after-epochs): the Trainer callback that unfreezes every
parameter after K epochs. Its own module so that registering the modes imports no transformers."""

from __future__ import annotations

import logging

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

log = logging.getLogger("tunesuite")


class UnfreezeCallback(TrainerCallback, ExportableState):
    """Freeze-then-unfreeze: after K epochs every parameter trains (the optimizer already holds them all), at a
    lower learning rate: the schedule goes on from where it is, scaled to `learning_rate` (default: a tenth).

    Its state travels in each checkpoint (trainer_state.json): a run resumed after the unfreeze unfreezes at once,
    without scaling again (the optimizer and schedule states it loads are already scaled)."""

    needs_frozen_in_optimizer = True  # TuneTrainer then builds its optimizer over the frozen parameters too

    def __init__(self, after_epochs: float, learning_rate: float | None = None):
        self.after_epochs = after_epochs
        self.learning_rate = learning_rate
        self.done = False

    def state(self) -> dict:
        return {"args": {"after_epochs": self.after_epochs, "learning_rate": self.learning_rate},
                "attributes": {"done": self.done}}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.done:  # restored from the checkpoint resumed
            model.requires_grad_(True)

    def on_epoch_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        if not self.done and state.epoch is not None and state.epoch >= self.after_epochs - 1e-6:
            model.requires_grad_(True)
            self.done = True
            scale = (self.learning_rate / args.learning_rate) if self.learning_rate else 0.1
            if lr_scheduler is not None and hasattr(lr_scheduler, "base_lrs"):  # the schedule restarts from these
                lr_scheduler.base_lrs = [lr * scale for lr in lr_scheduler.base_lrs]
            for group in optimizer.param_groups if optimizer is not None else []:
                group["lr"] *= scale
            log.info("epoch %.0f: unfroze all parameters; continuing as full fine-tuning at %.3g times the learning "
                     "rate (%g)", state.epoch, scale, args.learning_rate * scale)
