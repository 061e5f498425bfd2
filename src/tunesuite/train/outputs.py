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

from tunesuite.config.resolve import RunConfig, save_run_config
from tunesuite.errors import TunesuiteError
from tunesuite.files import give_user_modes, write_text_atomic
from tunesuite.train.guard import is_write_failure, save_failed_message

log = logging.getLogger("tunesuite")
STAGING = ".saving"


def save_model(trainer: Trainer, cfg: RunConfig, prepared: Any, out: Path) -> None:
    """Write into OUT/.saving, then move each file into OUT: the final model is complete in OUT or absent, never
    half-written, never left in the staging folder (removed on any failure, Ctrl-C included).

    Called on every process (the Trainer writes from rank 0 only; sharded setups need all ranks).
    """
    stage = out / STAGING
    if trainer.is_world_process_zero():
        shutil.rmtree(stage, ignore_errors=True)  # a killed run's staging: never mixed into this model
    try:
        trainer.save_model(str(stage))
        if not trainer.is_world_process_zero():
            return
        model = trainer.model
        if hasattr(model, "peft_config"):  # adapters: keep the base config (label maps, head size) beside them
            model.get_base_model().config.save_pretrained(stage)
        prepared.processor.save_pretrained(stage)
        save_run_config(cfg, stage / "run_config.yaml", out / "run_config.yaml")
        give_user_modes(stage)  # safetensors writes 0600; the rest of OUT follows the user's umask
        for file in stage.iterdir():  # renames within one file system: no space needed, nothing half-written
            os.replace(file, out / file.name)
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(e, OSError) or is_write_failure(e):  # full, unwritable (safetensors, torch: own error types)
            raise TunesuiteError(save_failed_message(out, "the final model", e)) from None
        raise
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
