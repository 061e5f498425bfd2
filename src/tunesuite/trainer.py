"""The shared wrapper: load data and model -> apply the mode -> transformers.Trainer -> evaluate -> save."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint

from . import data
from .config import RunConfig, save_run_config
from .errors import TunesuiteError
from .modes import MODES, trainable_summary

log = logging.getLogger("tunesuite")


class UnfreezeCallback(TrainerCallback):
    """Freeze-then-unfreeze: after K epochs every parameter trains (the optimizer already holds them all)."""

    def __init__(self, after_epochs: float):
        self.after_epochs = after_epochs
        self.done = False

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if not self.done and state.epoch is not None and state.epoch >= self.after_epochs - 1e-6:
            model.requires_grad_(True)
            self.done = True
            log.info("epoch %.0f: unfroze all parameters; continuing as full fine-tuning", state.epoch)


class TuneTrainer(Trainer):
    """Trainer whose optimizer also holds frozen parameters when they will be unfrozen later.

    AdamW skips parameters without gradients, so frozen ones cost nothing until they unfreeze.
    """

    unfreeze_later = False

    def create_optimizer(self, *args, **kwargs):
        if not self.unfreeze_later:
            return super().create_optimizer(*args, **kwargs)
        frozen = [p for p in self.model.parameters() if not p.requires_grad]
        for p in frozen:
            p.requires_grad_(True)
        try:
            return super().create_optimizer(*args, **kwargs)
        finally:
            for p in frozen:
                p.requires_grad_(False)


def new_modules(missing_keys: list[str]) -> list[str]:
    """Module names whose weights the checkpoint lacked (newly initialised, so they must train)."""
    return sorted({key.rsplit(".", 1)[0] for key in missing_keys})


def load_model(task: Any, cfg: RunConfig, model_kwargs: dict[str, Any]) -> tuple[torch.nn.Module, list[str]]:
    """The pretrained model with a head for this data, and the module names that must train."""
    try:
        model, info = task.auto_model.from_pretrained(
            cfg.model.model, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir,
            ignore_mismatched_sizes=True, output_loading_info=True, **model_kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise TunesuiteError(f"could not load model {cfg.model.model!r}: {first}") from None
    fresh = new_modules([*info.get("missing_keys", ()), *(k for k, *_ in info.get("mismatched_keys", ()))])
    present = {name for name, _ in model.named_modules()}
    head = sorted({h for h in task.head_modules if h in present} | set(fresh))
    if fresh:
        log.info("newly initialised (will train in every mode): %s", ", ".join(fresh))
    return model, head


def apply_mode(model: torch.nn.Module, task: Any, cfg: RunConfig, head: list[str]) -> torch.nn.Module:
    mode = cfg.tuning.mode
    if cfg.tuning.unfreeze_after_epochs is not None:
        if mode not in ("full", "frozen"):
            raise TunesuiteError("--unfreeze-after-epochs works with --mode frozen (or full), not " + mode)
        mode = "frozen"
    model = MODES[mode](model, task, cfg, head)
    trainable, total = trainable_summary(model)
    log.info("mode %s: trainable params %s of %s (%.2f%%)", cfg.tuning.mode, f"{trainable:,}", f"{total:,}",
             100 * trainable / total)
    return model


def _resume_path(cfg: RunConfig) -> str | None:
    wanted = cfg.training.resume_from_checkpoint
    if wanted != "auto":
        return wanted
    last = get_last_checkpoint(cfg.training.output_dir) if Path(cfg.training.output_dir).is_dir() else None
    log.info("resume auto: %s", last or "no checkpoint found, starting fresh")
    return last


def build_trainer(task: Any, cfg: RunConfig, model: torch.nn.Module, prepared: Any) -> TuneTrainer:
    callbacks: list[TrainerCallback] = []
    if cfg.tuning.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(cfg.tuning.early_stopping_patience))
    if cfg.tuning.unfreeze_after_epochs is not None:
        callbacks.append(UnfreezeCallback(cfg.tuning.unfreeze_after_epochs))
    if prepared.eval is None and cfg.training.eval_strategy.value != "no":
        raise TunesuiteError("no eval split: pass --eval-strategy no or --validation-split-percentage > 0")
    trainer = TuneTrainer(
        model=model, args=cfg.training, train_dataset=prepared.train, eval_dataset=prepared.eval,
        data_collator=task.collator(prepared.processor), processing_class=prepared.processor,
        compute_metrics=task.compute_metrics(prepared), preprocess_logits_for_metrics=task.preprocess_logits,
        callbacks=callbacks)
    trainer.unfreeze_later = cfg.tuning.unfreeze_after_epochs is not None
    return trainer


def finetune_config(task: Any, cfg: RunConfig) -> dict[str, Any]:
    """Run one fine-tuning job described by `cfg`; returns all metrics (also saved to all_results.json)."""
    if not cfg.model.model:
        raise TunesuiteError("--model is required (a Hub id or a local directory)")
    if not cfg.data.dataset:
        raise TunesuiteError("--dataset is required (a Hub dataset name or a local directory/file)")
    if Path(cfg.model.model).is_dir():  # absolute, so adapters saved later find their base from anywhere
        cfg.model.model = str(Path(cfg.model.model).resolve())
    set_seed(cfg.training.seed)
    out = Path(cfg.training.output_dir)
    raw = data.load_raw(cfg.data.dataset, cfg.data.dataset_config, cfg.model.cache_dir)
    processor = task.load_processor(cfg.model.model, cfg)
    prepared = task.preprocess(raw, processor, cfg)
    set_seed(cfg.training.seed)  # again: data loading may or may not draw random numbers (cache hits)
    model, head = load_model(task, cfg, prepared.model_kwargs)
    model = apply_mode(model, task, cfg, head)
    trainer = build_trainer(task, cfg, model, prepared)

    trainable, total = trainable_summary(model)
    metrics: dict[str, Any] = {"trainable_params": trainable, "total_params": total,
                               "trainable_percent": 100 * trainable / total}
    if prepared.train is not None:
        result = trainer.train(resume_from_checkpoint=_resume_path(cfg))
        metrics.update(result.metrics)
    main = trainer.is_world_process_zero()
    if main:
        save_outputs(trainer, task, cfg, prepared, out)
    for split, dataset in (("eval", prepared.eval), ("test", prepared.test)):
        if dataset is None:
            continue
        output = trainer.predict(dataset, metric_key_prefix=split)
        metrics.update(output.metrics)
        if main and task.write_reports is not None:
            table = task.write_reports(output, prepared, out, split)
            if table:
                log.info("%s per-class report:\n%s", split, table)
        if main and cfg.training.do_predict and (split == "test" or prepared.test is None):
            write_predictions(task, prepared, trainer.model.config, output, out / "predictions.jsonl", split)
    if main:
        (out / "all_results.json").write_text(json.dumps(metrics, indent=2, default=float))
        log.info("results: %s", {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    return {**metrics, "output_dir": str(out)}


def save_outputs(trainer: Trainer, task: Any, cfg: RunConfig, prepared: Any, out: Path) -> None:
    """Model (or adapter) + processor + label maps + run_config.yaml, in OUT."""
    out.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(out))
    model = trainer.model
    if hasattr(model, "peft_config"):  # adapters: keep the base config (label maps, head size) beside them
        model.get_base_model().config.save_pretrained(out)
    prepared.processor.save_pretrained(out)
    save_run_config(cfg, out / "run_config.yaml")


def write_predictions(task: Any, prepared: Any, config: Any, output: Any, path: Path, split: str) -> None:
    """One JSON line per example: its input columns, the prediction, and the reference."""
    rows = task.decode(output.predictions, prepared.processor, config)
    raw = prepared.raw.get(split)
    columns, reference = prepared.info.get("input_columns", []), prepared.info.get("reference_column")
    with path.open("w") as f:
        for i, row in enumerate(rows):
            record = {c: raw[i][c] for c in columns} if raw is not None else {}
            record.update(row)
            if raw is not None and reference:
                record["reference"] = raw[i][reference]
            f.write(json.dumps(record, default=_to_builtin) + "\n")
    log.info("wrote %d predictions to %s", len(rows), path)


def _to_builtin(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else str(value)
