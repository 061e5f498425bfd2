"""After training: the eval and test splits through the trained model (metrics, reports, predictions)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import Trainer

from ..publish import outputs, report
from ..registry import Prepared, Task
from .config import RunConfig

log = logging.getLogger("tunesuite")


def evaluate_splits(trainer: Trainer, task: Task, cfg: RunConfig, prepared: Prepared, out: Path) -> dict[str, Any]:
    """eval_* and test_* metrics (gathered over all processes), reports and predictions from rank 0."""
    metrics: dict[str, Any] = {}
    main = trainer.is_world_process_zero()
    for split, dataset in (("eval", prepared.eval), ("test", prepared.test)):
        if dataset is None:
            continue
        scored = getattr(trainer, "scored", None)  # the last epoch's evaluation, when the weights are the same
        output = (scored and scored(dataset)) or trainer.predict(dataset, metric_key_prefix=split)
        metrics.update(output.metrics)
        if main and task.results.write_reports is not None:
            table = task.results.write_reports(output, prepared, out, split)
            if table:
                log.info("%s per-class report:\n%s", split, table)
        if main:
            report.write_mistakes(task, output, prepared, out, split)
        if main and cfg.training.do_predict and (split == "test" or prepared.test is None):
            outputs.write_predictions(task, prepared, trainer.model.config, output, out / "predictions.jsonl", split)
    return metrics
