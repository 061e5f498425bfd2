"""What text and image classification share: label encoding, metrics, reports and decoding logits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunesuite.errors import TunesuiteError
from tunesuite.registry import Prepared
from tunesuite.tasks import calibration, metrics, operating_point, thresholds

log = logging.getLogger("tunesuite")
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
    """The Trainer's metrics of a split; single-label ROC-AUC only up to metrics.ROC_AUC_MAX_CLASSES classes
    (said once in the log past that)."""
    problem = prepared.problem_type
    said = []

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if problem == REGRESSION:
            return metrics.regression(labels.reshape(-1), logits.reshape(-1))
        if problem == MULTI:
            return {**metrics.multi_label(labels.astype(int), (logits > 0).astype(int)),
                    **metrics.multi_label_scores(labels, metrics.sigmoid(logits))}
        found = {**metrics.single_label(labels, logits.argmax(-1)),
                 "ece": calibration.expected_calibration_error(logits, labels)}
        if logits.shape[-1] > metrics.ROC_AUC_MAX_CLASSES:
            if not said:
                said.append(True)
                log.info("roc_auc left out: %s classes (one-vs-rest AUC is computed up to %s)",
                         f"{logits.shape[-1]:,}", f"{metrics.ROC_AUC_MAX_CLASSES:,}")
            return found
        auc = metrics.roc_auc(labels, metrics.softmax(logits))
        return {**found, **({"roc_auc": auc} if auc is not None else {})}

    return compute


def metric_inputs(prepared: Prepared) -> Callable[[Any], tuple[list, list]]:
    """What `--metric` metrics score: predicted vs true class ids (multi-hot rows for multi-label, numbers for
    regression)."""
    problem = prepared.problem_type

    def inputs(eval_pred: Any) -> tuple[list, list]:
        logits, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
        if problem == REGRESSION:
            return logits.reshape(-1).tolist(), labels.reshape(-1).tolist()
        if problem == MULTI:
            return (logits > 0).astype(int).tolist(), labels.astype(int).tolist()
        return logits.argmax(-1).tolist(), labels.reshape(-1).astype(int).tolist()

    return inputs


def write_reports(output: Any, prepared: Prepared, out_dir: Path, split: str) -> str | None:
    """Single-label splits: per-class JSON, the confusion matrix as CSV (every class) and PNG (bounded), the ROC
    curve PNG of a binary problem; returns the printed table."""
    if prepared.problem_type != SINGLE:
        return None
    names, labels = prepared.label_names, np.asarray(output.label_ids).reshape(-1)
    if len(names) == 2 and len(np.unique(labels)) == 2:
        metrics.save_roc_png(labels, metrics.softmax(output.predictions)[:, 1], names[1],
                            out_dir / f"{split}_roc_curve.png", f"{split} ROC curve")
    return metrics.write_classification_reports(labels, output.predictions.argmax(-1), names, out_dir, split)


def resolve_class_weights(given: list[str] | None, problem: str, names: list[str] | None,
                          train_targets: list[Any]) -> list[float] | None:
    """--class-weights as numbers in label order: `auto` is scikit-learn's balanced weights (inverse frequency
    in the training split; for multi-label, of each class's positives); None when the flag is unset."""
    if not given:
        return None
    if problem == REGRESSION or not names:
        raise TunesuiteError("--class-weights: a regression target has no classes to weigh")
    if [g.lower() for g in given] == ["auto"]:
        return _balanced(problem, len(names), train_targets)
    try:
        weights = [float(g) for g in given]
    except ValueError:
        raise TunesuiteError(f"--class-weights takes 'auto' or numbers, got {' '.join(given)!r}") from None
    if len(weights) != len(names):
        raise TunesuiteError(f"--class-weights: {len(weights)} weights for {len(names)} classes "
                             f"({', '.join(names)}); give one per class in that order, or auto")
    if any(not np.isfinite(w) or w < 0 for w in weights) or not any(weights):
        raise TunesuiteError(f"--class-weights must be finite, not negative, and not all 0 (got {given})")
    return weights


def _balanced(problem: str, num_classes: int, targets: list[Any]) -> list[float]:
    from sklearn.utils.class_weight import compute_class_weight

    if problem == MULTI:  # positives per class column: n / (classes * positives), as for single labels
        positives = np.asarray(targets, dtype=float).sum(0)
        return [float(len(targets) / (num_classes * p)) if p else 1.0 for p in positives]
    ids = np.asarray(targets, dtype=int)
    present = np.unique(ids)
    balanced = dict(zip(present, compute_class_weight("balanced", classes=present, y=ids), strict=True))
    return [float(balanced.get(c, 1.0)) for c in range(num_classes)]  # a class train lacks keeps weight 1


def decode(logits: Any, processor: Any, config: Any) -> list[dict[str, Any]]:
    """Logits -> {"label", "score"} (single-label), {"labels", "scores"} (multi-label) or {"score"} (regression).

    Single-label scores are divided by the config's temperature (1.0 unless the run was fitted with --calibrate)."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
    if config.problem_type == REGRESSION:
        return [{"score": float(v)} for v in logits.reshape(-1)]
    if config.problem_type == MULTI:
        probs = logits.sigmoid()
        cuts = thresholds.of(config, probs.shape[-1])  # 0.5 each unless --tune-thresholds
        return [{"labels": [config.id2label[i] for i, p in enumerate(row) if p > cuts[i]],
                 "scores": {config.id2label[i]: round(float(p), 6) for i, p in enumerate(row)}} for row in probs]
    probs = (logits / calibration.temperature(config)).softmax(-1)  # temperature 1.0 unless --calibrate
    score, index = probs.max(-1)
    cut = operating_point.threshold(config)
    if cut is not None and probs.shape[-1] == 2:  # a binary classifier's tuned operating point
        index = (probs[:, operating_point.POSITIVE] > cut).long()
        score = probs.gather(1, index[:, None])[:, 0]
    return [{"label": config.id2label[int(i)], "score": round(float(s), 6)} for s, i in zip(score, index, strict=True)]
