"""Progress: one bar per long step (training; evaluation when it runs alone), and the Trainer's logs as one
readable line instead of a printed dict (the libraries' own logs are kept quiet in logs.py)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

log = logging.getLogger("tunesuite")
TRAIN_KEYS = ("loss", "grad_norm", "learning_rate")  # the training loss goes on the bar; none is a line
SKIPPED = ("total_flos", "_runtime", "_per_second", "_params", "_percent")  # in all_results.json


def log_line(logs: dict[str, Any]) -> str:
    """`epoch 1: eval_loss 1.18, eval_accuracy 0.917` from a Trainer logs (or a run's metrics) dict."""
    values = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items() if _shown(k)]
    epoch = f"epoch {logs['epoch']:.3g}: " if isinstance(logs.get("epoch"), (int, float)) else ""
    return epoch + ", ".join(values)


def _shown(key: str) -> bool:
    return key != "epoch" and not key.endswith(SKIPPED)


class RunProgress(ProgressCallback):
    """transformers' bars, except: evaluation during training shows on the training bar (no second bar, which
    would need cursor-moving escapes), the training loss is the bar's postfix, other logs are one line each."""

    def on_prediction_step(self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any):
        if self.training_bar is None:  # evaluating after training, or alone: its own bar
            super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any):
        if not state.is_world_process_zero or not logs:
            return
        if self.training_bar is not None and isinstance(logs.get("loss"), float):
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4g}")
        rest = {k: v for k, v in logs.items() if k not in TRAIN_KEYS}
        if any(map(_shown, rest)):
            line = f"{time.strftime('%H:%M:%S')} tunesuite: {log_line(rest)}"
            if self.training_bar is not None:
                self.training_bar.write(line, file=sys.stderr)
            else:
                log.info(log_line(rest))


class LogPrinter(TrainerCallback):
    """With --disable-tqdm: the Trainer's logs as one tunesuite log line each (its printer prints dicts)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any):
        if state.is_world_process_zero and logs and any(map(_shown, logs)):
            log.info(log_line(logs))


def use_our_progress(trainer: Any) -> None:
    """Swap the Trainer's console callbacks for ours (a notebook's callback stays)."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(RunProgress)
    if trainer.pop_callback(PrinterCallback) is not None:
        trainer.add_callback(LogPrinter)
