"""Multi-label decision thresholds: one per class, tuned on the eval split to maximise that class's F1, stored in
the model config (`THRESHOLDS`) so predictions made from the saved model use them (0.5 for every class without)."""

from __future__ import annotations

from typing import Any

import numpy as np

THRESHOLDS = "tunesuite_thresholds"  # model config key
DEFAULT = 0.5  # the sigmoid's own cut (logit 0)


def of(config: Any, classes: int) -> np.ndarray:
    """The config's per-class thresholds, DEFAULT each when none were tuned."""
    found = getattr(config, THRESHOLDS, None)
    return np.asarray(found, dtype=np.float64) if found else np.full(classes, DEFAULT)


def best_threshold(probs: np.ndarray, positive: np.ndarray) -> float:
    """The cut t (predict p > t) of highest F1 on one class; DEFAULT for a class without positives to find.

    Predicting the top k rows positive gives F1 = 2 tp_k / (k + positives); cuts fall between distinct scores."""
    total = int(positive.sum())
    if total == 0:
        return DEFAULT
    order = np.argsort(-probs, kind="stable")
    ranked, hits = probs[order], positive[order].astype(float)
    k = np.arange(1, len(ranked) + 1)
    f1 = 2 * np.cumsum(hits) / (k + total)
    valid = np.append(ranked[:-1] > ranked[1:], True)  # never cut between equal scores
    best = int(np.argmax(np.where(valid, f1, -1.0)))
    below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
    return float((ranked[best] + below) / 2)


def tune(probs: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per-class thresholds maximising each class's F1 on (rows, classes) probabilities and 0/1 labels."""
    return [round(best_threshold(probs[:, c], labels[:, c] > 0.5), 6) for c in range(probs.shape[1])]
