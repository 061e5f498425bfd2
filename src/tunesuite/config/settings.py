"""A run's resolved settings in a few words: learning rate, epochs, effective batch, the mode and its arguments,
seed, precision and attention. The command line leaves defaults out; these are what the run really uses. The log's
first lines, run_summary.json (so report.html) and compare's table all show this one dict."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from tunesuite import registry
from tunesuite.config.fields import RunConfig
from tunesuite.config.resolve import run_precision

log = logging.getLogger("tunesuite")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def attention_of(cfg: RunConfig) -> str:
    """The attention implementation the model loads with (config.precision.attention_kwargs decides it)."""
    requested, args = cfg.model.attn_implementation, cfg.training
    if requested != "auto":
        return requested
    if args.bf16 and args.use_cpu:
        return "eager (auto: faster than sdpa for bf16 on a CPU)"
    return "auto (the model's default: sdpa where it has it)"


def run_settings(cfg: RunConfig) -> dict[str, str]:
    """name -> value as shown, in a fixed order."""
    t = cfg.training
    mode = registry.modes()[cfg.run.mode]
    per_device, steps = t.per_device_train_batch_size, t.gradient_accumulation_steps
    world = max(int(getattr(t, "world_size", 1) or 1), 1)
    batch = f"{per_device * steps * world}"
    if steps > 1 or world > 1:
        batch += f" ({per_device} per device x {steps} accumulation steps x {world} processes)"
    mode_args = dataclasses.asdict(cfg.mode_args) if cfg.mode_args is not None else {}
    chosen = precision_of(cfg, mode)
    return {"learning rate": _number(t.learning_rate),
            "epochs": f"max {t.max_steps} steps" if t.max_steps and t.max_steps > 0 else _number(t.num_train_epochs),
            "effective batch": batch,
            "mode": cfg.run.mode + (" (" + ", ".join(f"{k} {_number(v)}" for k, v in mode_args.items()) + ")"
                                    if mode_args else ""),
            "seed": str(t.seed),
            "precision": chosen,
            "attention": attention_of(cfg)}


def precision_of(cfg: RunConfig, mode: registry.Mode) -> str:
    """`bf16 (why)`: what the TrainingArguments train in, with the reason config.precision gave."""
    t = cfg.training
    name = "bf16" if t.bf16 else "fp16" if t.fp16 else "fp32"
    decided = run_precision(mode, dict(cfg.saved))
    return f"{name} ({decided.why})" if decided.name == name else name


def log_settings(settings: dict[str, str]) -> None:
    """The settings as the log's first lines, one per setting."""
    width = max(map(len, settings)) + 1
    for name, value in settings.items():
        log.info("setting %s %s", f"{name}:".ljust(width), value)
