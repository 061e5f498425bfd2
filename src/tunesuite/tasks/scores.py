"""Classifier metrics from predicted probabilities (scikit-learn, scipy): ROC-AUC, average precision, the ROC curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..publish.files import atomic_path

# One-vs-rest ROC-AUC sorts every row once per class: past this many classes (a pass over the rows each) it is
# left out of the metrics rather than slowing each evaluation down quadratically.
ROC_AUC_MAX_CLASSES = 1000
ROW_BLOCK = 2**22  # logits scored at a time by `predicted_and_loss` (32 MB of float64)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits (scipy), over the last axis."""
    from scipy import special

    return special.softmax(np.asarray(logits, dtype=np.float64), axis=-1)


def predicted_and_loss(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the predicted class, its probability, and the loss (-log p, capped at 1e-12) of the true class.

    Computed a block of rows at a time: a head of many classes never needs a float64 copy of all the logits."""
    from scipy import special

    logits, labels = np.asarray(logits), np.asarray(labels).reshape(-1)
    predicted = np.empty(len(labels), dtype=np.int64)
    confidence, loss = np.empty(len(labels)), np.empty(len(labels))
    step = max(1, ROW_BLOCK // max(1, logits.shape[-1]))
    for start in range(0, len(labels), step):
        block = np.asarray(logits[start:start + step], dtype=np.float64)
        rows, norm = np.arange(len(block)), special.logsumexp(block, axis=-1)
        chosen = block.argmax(-1)
        predicted[start:start + step] = chosen
        confidence[start:start + step] = np.exp(block[rows, chosen] - norm)
        loss[start:start + step] = np.minimum(norm - block[rows, labels[start:start + step]], -np.log(1e-12))
    return predicted, confidence, loss


def sigmoid(logits: np.ndarray) -> np.ndarray:
    from scipy import special

    return special.expit(np.asarray(logits, dtype=np.float64))


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Single-label ROC-AUC: binary on the positive class's probability; more classes, macro one-vs-rest.

    Classes absent from `labels` have no ROC curve: the macro mean is over the classes present. None when fewer
    than two classes occur."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).reshape(-1)
    present = np.unique(labels)
    if len(present) < 2:
        return None
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    if len(present) == probs.shape[1]:
        return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    return float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in present]))


def multi_label_scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Macro ROC-AUC and average precision over the classes that have both positives and negatives."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels).astype(int)
    scored = [c for c in range(labels.shape[1]) if 0 < labels[:, c].sum() < len(labels)]
    if not scored:
        return {}
    return {"roc_auc": float(roc_auc_score(labels[:, scored], probs[:, scored], average="macro")),
            "average_precision": float(average_precision_score(labels[:, scored], probs[:, scored],
                                                               average="macro"))}


def save_roc_png(labels: np.ndarray, positive: np.ndarray, name: str, path: Path, title: str) -> None:
    """sklearn's ROC curve plot of a binary problem (`positive`: the probability of class 1, called `name`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    try:
        RocCurveDisplay.from_predictions(labels, positive, name=name, ax=ax, plot_chance_level=True)
        ax.set_title(title)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
