"""A run's resolved settings in a few words: learning rate, epochs, effective batch, the mode and its arguments,
seed, precision and attention. The command line leaves defaults out; these are what the run really uses. The log's
first lines, run_summary.json (so report.html) and compare's table all show this one dict."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from tunesuite.config.fields import RunConfig
from tunesuite.config.precision import attention_choice

log = logging.getLogger("tunesuite")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def attention_of(cfg: RunConfig) -> str:
    """The attention implementation the model loads with, as config.precision.attention_choice decides it."""
    chosen, why = attention_choice(cfg.model.attn_implementation, cfg.training, cfg.model.model)
    return chosen if cfg.model.attn_implementation != "auto" else f"{chosen or 'auto'} ({why})"


def run_settings(cfg: RunConfig) -> dict[str, str]:
    """name -> value as shown, in a fixed order."""
    t = cfg.training
    per_device, steps = t.per_device_train_batch_size, t.gradient_accumulation_steps
    world = max(int(getattr(t, "world_size", 1) or 1), 1)
    batch = f"{per_device * steps * world}"
    if steps > 1 or world > 1:
        batch += f" ({per_device} per device x {steps} accumulation steps x {world} processes)"
    mode_args = dataclasses.asdict(cfg.mode_args) if cfg.mode_args is not None else {}
    return {"learning rate": _number(t.learning_rate),
            "epochs": f"max {t.max_steps} steps" if t.max_steps and t.max_steps > 0 else _number(t.num_train_epochs),
            "effective batch": batch,
            "mode": cfg.run.mode + (" (" + ", ".join(f"{k} {_number(v)}" for k, v in mode_args.items()) + ")"
                                    if mode_args else ""),
            "seed": str(t.seed),
            "precision": cfg.precision,
            "attention": attention_of(cfg)}


def log_settings(settings: dict[str, str]) -> None:
    """The settings as the log's first lines, one per setting."""
    width = max(map(len, settings)) + 1
    for name, value in settings.items():
        log.info("setting %s %s", f"{name}:".ljust(width), value)
