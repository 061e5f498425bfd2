"""What text and image classification share: label encoding, metrics, reports and decoding logits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..registry import Prepared
from . import metrics

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"


def label_encoder(problem: str, names: list[str] | None, class_label: bool) -> Callable[[Any], Any]:
    """A raw label -> the model's target: a float (regression), a multi-hot list, or a class id.

    `class_label`: the column is a datasets ClassLabel (values are ids already), else values are names."""
    index = {n: i for i, n in enumerate(names or [])}

    def class_id(value: Any) -> int:
        return int(value) if class_label else index[str(value)]

    def encode(value: Any) -> Any:
        if problem == REGRESSION:
            return float(value)
        if problem == MULTI:
            hot = [0.0] * len(index)
            for v in value:
                hot[class_id(v)] = 1.0
            return hot
        return class_id(value)

    return encode


def compute_metrics(prepared: Prepared) -> Callable[[Any], dict[str, float]]:
    problem, names = prepared.problem_type, prepared.label_names

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if problem == REGRESSION:
            return metrics.regression(labels.reshape(-1), logits.reshape(-1))
        if problem == MULTI:
            return metrics.multi_label(labels.astype(int), (logits > 0).astype(int))
        return metrics.single_label(labels, logits.argmax(-1), len(names))

    return compute


def write_reports(output: Any, prepared: Prepared, out_dir: Path, split: str) -> str | None:
    """Single-label splits: per-class JSON + confusion matrix PNG; returns the printed table."""
    if prepared.problem_type != SINGLE:
        return None
    return metrics.write_classification_reports(output.label_ids, output.predictions.argmax(-1),
                                                prepared.label_names, out_dir, split)


def decode(logits: Any, processor: Any, config: Any) -> list[dict[str, Any]]:
    """Logits -> {"label", "score"} (single-label), {"labels", "scores"} (multi-label) or {"score"} (regression)."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
    if config.problem_type == REGRESSION:
        return [{"score": float(v)} for v in logits.reshape(-1)]
    if config.problem_type == MULTI:
        probs = logits.sigmoid()
        return [{"labels": [config.id2label[i] for i, p in enumerate(row) if p > 0.5],
                 "scores": {config.id2label[i]: round(float(p), 6) for i, p in enumerate(row)}} for row in probs]
    score, index = logits.softmax(-1).max(-1)
    return [{"label": config.id2label[int(i)], "score": round(float(s), 6)} for s, i in zip(score, index, strict=True)]
