"""AdaLoRA's rank budget, driven from the Trainer: peft needs the run's total steps in its config and
`update_and_allocate(step)` after each optimizer step, while the gradients it scores ranks by still exist.

The steps are known only once the Trainer has its data, so the config is built with a placeholder and the
schedule (total steps, warm-up and final phases as fractions of them) is written into it when training begins;
peft's rank allocator reads that same config object.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger("tunesuite")


class AdaloraScheduleCallback(TrainerCallback):
    """Writes the schedule into the AdaLoRA config at the start; reallocates ranks after every optimizer step."""

    def __init__(self, warmup: float, final: float) -> None:
        self.warmup, self.final = warmup, final

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        config = model.peft_config["default"]
        total = max(state.max_steps, 1)
        config.total_step = total
        config.tinit = int(self.warmup * total)
        config.tfinal = min(int(self.final * total), max(total - config.tinit - 1, 0))
        log.info("AdaLoRA: ranks %d -> %d on average over %d steps (warm-up %d, final %d)", config.init_r,
                 config.target_r, total, config.tinit, config.tfinal)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        model.base_model.update_and_allocate(state.global_step)


def callbacks(mode_args: Any) -> list[TrainerCallback]:
    """The adalora mode's callbacks, from its flags."""
    return [AdaloraScheduleCallback(mode_args.adalora_warmup, mode_args.adalora_final)]
