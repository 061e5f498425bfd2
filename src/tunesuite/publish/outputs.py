"""What a finished run writes to OUT: model/adapter + processor + label maps, configs, reports, predictions."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from transformers import Trainer

from ..core.config import RunConfig, save_run_config
from ..core.run_guard import is_disk_full, save_failed_message
from ..errors import TunesuiteError
from .files import write_text_atomic

log = logging.getLogger("tunesuite")
STAGING = ".saving"


def save_model(trainer: Trainer, cfg: RunConfig, prepared: Any, out: Path) -> None:
    """Write into OUT/.saving, then move each file into OUT: a crash never leaves a half-written model file.

    Called on every process (the Trainer writes from rank 0 only; sharded setups need all ranks).
    """
    stage = out / STAGING
    try:
        trainer.save_model(str(stage))
        if not trainer.is_world_process_zero():
            return
        model = trainer.model
        if hasattr(model, "peft_config"):  # adapters: keep the base config (label maps, head size) beside them
            model.get_base_model().config.save_pretrained(stage)
        prepared.processor.save_pretrained(stage)
        save_run_config(cfg, stage / "run_config.yaml", out / "run_config.yaml")
    except Exception as e:  # disk full (safetensors reports it as its own error type) or unwritable
        if not (isinstance(e, OSError) or is_disk_full(e)):
            raise
        shutil.rmtree(stage, ignore_errors=True)  # the model from any earlier run in OUT is untouched
        raise TunesuiteError(save_failed_message(out, "the final model", e)) from None
    for file in stage.iterdir():
        os.replace(file, out / file.name)
    shutil.rmtree(stage, ignore_errors=True)


def save_results(metrics: dict[str, Any], out: Path) -> None:
    write_text_atomic(out / "all_results.json", json.dumps(metrics, indent=2, default=float))


def write_predictions(task: Any, prepared: Any, config: Any, output: Any, path: Path, split: str) -> None:
    """One JSON line per example: its input columns, the prediction, and the reference."""
    rows = task.results.decode(output.predictions, prepared.processor, config)
    raw = prepared.raw.get(split)
    columns, reference = prepared.input_columns, prepared.reference_column
    lines = []
    for i, row in enumerate(rows):
        record = {c: raw[i][c] for c in columns} if raw is not None else {}
        record.update(row)
        if raw is not None and reference:
            record["reference"] = raw[i][reference]
        if task.results.format_prediction is not None:
            record = task.results.format_prediction(record)
        lines.append(json.dumps(record, default=_to_builtin))
    write_text_atomic(path, "\n".join(lines) + "\n")
    log.info("wrote %d predictions to %s", len(rows), path)


def _to_builtin(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else str(value)
