"""The suite side of a measurement: the Trainer that tunesuite builds, up to the point where it trains.

Mirrors the first half of tunesuite.trainer.finetune_config (parse -> data -> preprocess -> model -> mode ->
Trainer) with the library's own functions, so what trains here is exactly what a run trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments, set_seed

from tunesuite import data, get_task
from tunesuite.runner import parse_args
from tunesuite.trainer import apply_mode, build_trainer, load_model


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
    spec = get_task(task)
    cfg = parse_args(spec, tokens)
    set_seed(cfg.training.seed)
    raw = data.load_raw(cfg.data.dataset, cfg.data.dataset_config, cfg.model.cache_dir)
    processor = spec.load_processor(cfg.model.model, cfg)
    prepared = spec.preprocess(raw, processor, cfg)
    set_seed(cfg.training.seed)
    model, head = load_model(spec, cfg, prepared.model_kwargs)
    model = apply_mode(model, spec, cfg, head)
    return build_trainer(spec, cfg, model, prepared), prepared
