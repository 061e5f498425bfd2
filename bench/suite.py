"""The suite side of a measurement: the Trainer that tunesuite builds, up to the point where it trains.

Builds through tunesuite.core.trainer.build, the function a run builds with (data -> preprocess -> model -> mode ->
Trainer), so what trains here is exactly what a run trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments

from tunesuite import get_task
from tunesuite.core import trainer
from tunesuite.runner import parse_args


def argv(model: Path, dataset: Path, mode: str, out: Path, steps: int, **flags: Any) -> list[str]:
    """Command-line flags for a short training run: no evaluation, no checkpoints, no progress bars."""
    options = {"model": model, "dataset": dataset, "mode": mode, "output_dir": out, "max_steps": steps,
               "eval_strategy": "no", "save_strategy": "no", "disable_tqdm": True, "seed": 0, **flags}
    tokens: list[str] = []
    for key, value in options.items():
        tokens += ["--" + key.replace("_", "-"), str(value)]
    return tokens


def training_args(task: str, tokens: list[str]) -> TrainingArguments:
    """The TrainingArguments a suite run with these flags trains with (the bare baseline gets the same)."""
    return parse_args(get_task(task), tokens).training


def build(task: str, tokens: list[str]) -> tuple[Trainer, Any]:
    """The suite's Trainer for these flags, and the task's prepared data."""
    return trainer.build(get_task(task), parse_args(get_task(task), tokens))
