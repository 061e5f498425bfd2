"""The suite side of a measurement: the Trainer that tunesuite builds, up to the point where it trains.

Builds through tunesuite.train.recipe.build, the function a run builds with (data -> preprocess -> model -> mode ->
Trainer), so what trains here is exactly what a run trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments

from tunesuite import get_task
from tunesuite.cli import keyword_config
from tunesuite.config.resolve import RunConfig
from tunesuite.train import recipe as trainer


def options(model: Path, dataset: Path, mode: str, out: Path, steps: int, **flags: Any) -> dict[str, Any]:
    """The settings of a short training run: no evaluation, no checkpoints, no progress bars."""
    return {"model": str(model), "dataset": str(dataset), "mode": mode, "output_dir": str(out), "max_steps": steps,
            "eval_strategy": "no", "save_strategy": "no", "disable_tqdm": True, "seed": 0, **flags}


def run_config(task: str, settings: dict[str, Any]) -> RunConfig:
    """The RunConfig a suite run with these settings has (the library path, as tunesuite.finetune)."""
    return keyword_config(get_task(task), settings)


def training_args(task: str, settings: dict[str, Any]) -> TrainingArguments:
    """The TrainingArguments a suite run with these settings trains with (the bare baseline gets the same)."""
    return trainer.trainer_arguments(run_config(task, settings))


def build(task: str, settings: dict[str, Any]) -> tuple[Trainer, Any]:
    """The suite's Trainer for these settings, and the task's prepared data."""
    return trainer.build(get_task(task), run_config(task, settings))
