"""The operating point of a binary classifier: one cut on the probability of the positive class (class id 1),
chosen on the eval split for F1 or to reach a target precision or recall, stored in the model config
(`THRESHOLD`) so predictions from the saved model use it (argmax, i.e. 0.5, without). The precision/recall curve
with the chosen point marked is drawn by scikit-learn's PrecisionRecallDisplay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tunesuite.tasks import calibration, thresholds
from tunesuite.tasks.metrics import saved_figure

THRESHOLD = "tunesuite_binary_threshold"  # model config key: predict class 1 when its probability is above it
POSITIVE = 1  # the class whose probability is cut (as the ROC curve's)


def positive_probability(logits: np.ndarray, config: Any) -> np.ndarray:
    """p(class 1) as predict sees it: after the config's temperature (1.0 unless --calibrate)."""
    return calibration.softmax(np.asarray(logits, dtype=np.float64), calibration.temperature(config))[:, POSITIVE]


def threshold(config: Any) -> float | None:
    found = getattr(config, THRESHOLD, None)
    return None if found is None else float(found)


def cuts(probs: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cut between distinct scores: (thresholds, precision, recall) of predicting p > threshold."""
    order = np.argsort(-probs, kind="stable")
    ranked, hits = probs[order], positive[order].astype(float)
    k = np.arange(1, len(ranked) + 1)
    tp = np.cumsum(hits)
    valid = np.append(ranked[:-1] > ranked[1:], True)  # never cut between equal scores
    below = np.append(ranked[1:], 0.0)
    at = (ranked + below) / 2
    return at[valid], (tp / k)[valid], (tp / max(hits.sum(), 1))[valid]


def choose(probs: np.ndarray, positive: np.ndarray, target_precision: float | None = None,
           target_recall: float | None = None) -> tuple[float, bool]:
    """(the cut, whether the target was reached): the highest recall at precision >= target_precision, the
    highest precision at recall >= target_recall, else the highest F1 (the multi-label thresholds' own cut).
    A target no cut reaches gives the cut closest to it (highest precision, or highest recall)."""
    at, precision, recall = cuts(np.asarray(probs, dtype=np.float64), np.asarray(positive, dtype=bool))
    if target_precision is not None:
        ok = precision >= target_precision
        best = int(np.argmax(np.where(ok, recall + 1e-9 * at, -1.0))) if ok.any() else int(np.argmax(precision))
        return float(at[best]), bool(ok.any())
    if target_recall is not None:
        ok = recall >= target_recall
        best = int(np.argmax(np.where(ok, precision + 1e-9 * at, -1.0))) if ok.any() else int(np.argmax(recall))
        return float(at[best]), bool(ok.any())
    return thresholds.best_threshold(np.asarray(probs, dtype=np.float64), np.asarray(positive, dtype=bool)), True


def scores_at(probs: np.ndarray, positive: np.ndarray, cut: float) -> dict[str, float]:
    """precision, recall and F1 of the positive class when predicting p > cut."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(np.asarray(positive, dtype=int), (probs > cut).astype(int),
                                                 average="binary", zero_division=0)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def save_pr_png(probs: np.ndarray, positive: np.ndarray, cut: float, name: str, path: Path, title: str) -> None:
    """scikit-learn's precision/recall curve with the operating point marked."""
    from sklearn.metrics import PrecisionRecallDisplay

    point = scores_at(probs, positive, cut)
    with saved_figure(path, (4.5, 4.5), title) as ax:
        PrecisionRecallDisplay.from_predictions(np.asarray(positive, dtype=int), probs, name=name, ax=ax)
        ax.plot([point["recall"]], [point["precision"]], "o", color="tab:red",
                label=f"operating point (p > {cut:.3g})")
        ax.legend(loc="lower left")
