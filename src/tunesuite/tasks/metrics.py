"""Offline metrics (no Hub metric scripts): classification, multi-label, regression, plus reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """matrix[true, predicted] counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, preds), 1)
    return matrix


def single_label(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict[str, float]:
    matrix = confusion(labels, preds, num_classes)
    tp = np.diag(matrix).astype(float)
    _, _, f1 = _prf(tp, matrix.sum(0) - tp, matrix.sum(1) - tp)
    present = matrix.sum(1) + matrix.sum(0) > 0  # macro over classes that occur in labels or predictions
    return {"accuracy": float((labels == preds).mean()), "macro_f1": float(f1[present].mean())}


def multi_label(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """labels/preds: (n, classes) arrays of 0/1."""
    tp = (labels * preds).sum(0).astype(float)
    fp = ((1 - labels) * preds).sum(0).astype(float)
    fn = (labels * (1 - preds)).sum(0).astype(float)
    _, _, f1 = _prf(tp, fp, fn)
    _, _, micro = _prf(tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True))
    return {"subset_accuracy": float((labels == preds).all(1).mean()), "micro_f1": float(micro[0]),
            "macro_f1": float(f1.mean())}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (for Spearman correlation)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2)[inverse]


def regression(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    err = preds - labels
    var = ((labels - labels.mean()) ** 2).sum()
    out = {"mse": float((err**2).mean()), "mae": float(np.abs(err).mean()),
           "r2": float(1 - (err**2).sum() / var) if var > 0 else 0.0}
    if len(labels) > 1 and labels.std() > 0 and preds.std() > 0:
        out["pearson"] = float(np.corrcoef(labels, preds)[0, 1])
        out["spearman"] = float(np.corrcoef(_ranks(labels), _ranks(preds))[0, 1])
    return out


def per_class_report(labels: np.ndarray, preds: np.ndarray, names: list[str]) -> dict[str, dict]:
    matrix = confusion(labels, preds, len(names))
    tp = np.diag(matrix).astype(float)
    precision, recall, f1 = _prf(tp, matrix.sum(0) - tp, matrix.sum(1) - tp)
    return {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(matrix[i].sum())} for i, name in enumerate(names)}


def format_report(report: dict[str, dict]) -> str:
    width = max([len(n) for n in report] + [5])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for name, r in report.items():
        lines.append(f"{name:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    return "\n".join(lines)


def save_confusion_png(matrix: np.ndarray, names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    limit = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > limit else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_classification_reports(labels: np.ndarray, preds: np.ndarray, names: list[str], out_dir: Path,
                                 split: str) -> str:
    """Per-class JSON report + confusion-matrix PNG for a single-label split; returns the printed table."""
    report = per_class_report(labels, preds, names)
    (out_dir / f"{split}_per_class.json").write_text(json.dumps(report, indent=2))
    save_confusion_png(confusion(labels, preds, len(names)), names, out_dir / f"{split}_confusion_matrix.png",
                       f"{split} confusion matrix")
    return format_report(report)


def word_char_error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus-level WER and CER (jiwer): errors summed over all utterances, divided by reference length."""
    import jiwer

    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan")}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}
