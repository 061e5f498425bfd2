"""Metrics from the libraries that own them: scikit-learn (classification, regression, per-class reports,
confusion matrices), scipy (correlations) and jiwer (WER/CER). We only pick the definitions and name the keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn import metrics as sk


def single_label(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 over the classes that occur in the labels or the predictions (sklearn's default)."""
    return {"accuracy": float(sk.accuracy_score(labels, preds)),
            "macro_f1": float(sk.f1_score(labels, preds, average="macro", zero_division=0))}


def multi_label(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """labels/preds: (n, classes) arrays of 0/1; subset accuracy is sklearn's exact-match accuracy."""
    return {"subset_accuracy": float(sk.accuracy_score(labels, preds)),
            "micro_f1": float(sk.f1_score(labels, preds, average="micro", zero_division=0)),
            "macro_f1": float(sk.f1_score(labels, preds, average="macro", zero_division=0))}


def regression(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """Errors and R² (sklearn); Pearson and Spearman (scipy) only where they are defined (neither side constant)."""
    from scipy import stats

    out = {"mse": float(sk.mean_squared_error(labels, preds)), "mae": float(sk.mean_absolute_error(labels, preds)),
           "r2": float(sk.r2_score(labels, preds)) if np.ptp(labels) > 0 else 0.0}
    if len(labels) > 1 and np.ptp(labels) > 0 and np.ptp(preds) > 0:
        out["pearson"] = float(stats.pearsonr(labels, preds).statistic)
        out["spearman"] = float(stats.spearmanr(labels, preds).statistic)
    return out


def per_class_report(labels: np.ndarray, preds: np.ndarray, names: list[str]) -> dict[str, dict]:
    """{class: {precision, recall, f1, support}} for every class in label order (sklearn's classification_report)."""
    report = sk.classification_report(labels, preds, labels=range(len(names)), target_names=names,
                                      output_dict=True, zero_division=0)
    return {name: {"precision": float(report[name]["precision"]), "recall": float(report[name]["recall"]),
                   "f1": float(report[name]["f1-score"]), "support": int(report[name]["support"])} for name in names}


def save_confusion_png(labels: np.ndarray, preds: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """sklearn's confusion-matrix plot (rows: true class, columns: predicted), every class shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    sk.ConfusionMatrixDisplay.from_predictions(labels, preds, labels=range(len(names)), display_labels=names,
                                               cmap="Blues", colorbar=False, ax=ax, xticks_rotation=45)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_classification_reports(labels: np.ndarray, preds: np.ndarray, names: list[str], out_dir: Path,
                                 split: str) -> str:
    """{split}_per_class.json + {split}_confusion_matrix.png for a single-label split; returns the printed table."""
    report = per_class_report(labels, preds, names)
    (out_dir / f"{split}_per_class.json").write_text(json.dumps(report, indent=2))
    save_confusion_png(labels, preds, names, out_dir / f"{split}_confusion_matrix.png", f"{split} confusion matrix")
    return format_report(report)


def format_report(report: dict[str, dict]) -> str:
    """The per-class report as the table the log shows."""
    width = max([len(n) for n in report] + [5])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for name, r in report.items():
        lines.append(f"{name:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    return "\n".join(lines)


def word_char_error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus-level WER and CER (jiwer): errors summed over all utterances, divided by reference length.

    Empty references are left out (jiwer refuses them); none left: nan."""
    import jiwer

    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan")}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}
