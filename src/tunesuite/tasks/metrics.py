"""Metrics from the libraries that own them: scikit-learn (classification, regression, per-class reports,
confusion matrices), scipy (correlations) and jiwer (WER/CER). We only pick the definitions and name the keys."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from sklearn import metrics as sk

from ..publish.files import atomic_path, write_text_atomic
from ..publish.report_html import VIEW_CLASSES, weakest_classes


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


def confusion_cells(labels: np.ndarray, preds: np.ndarray, num_classes: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nonzero cells of the confusion matrix as (true ids, predicted ids, counts), row by row.

    Each (true, predicted) pair becomes one int64 key counted by np.unique: memory grows with the rows, never
    with the square of the class count (50,000 classes would take 20 GB as a dense matrix)."""
    keys = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(preds, dtype=np.int64)
    cells, counts = np.unique(keys, return_counts=True)
    return cells // num_classes, cells % num_classes, counts


def most_confused(true: np.ndarray, pred: np.ndarray, counts: np.ndarray, num_classes: int, limit: int
                  ) -> np.ndarray:
    """Ids (ascending) of the `limit` classes with the most errors, counted both as the true class and as the
    prediction, larger support first among equals; every class when there are no more than `limit`."""
    if num_classes <= limit:
        return np.arange(num_classes)
    off = true != pred
    errors = np.bincount(true[off], counts[off], minlength=num_classes) + \
        np.bincount(pred[off], counts[off], minlength=num_classes)
    support = np.bincount(true, counts, minlength=num_classes)
    return np.sort(np.lexsort((-support, -errors))[:limit])


def confusion_view(true: np.ndarray, pred: np.ndarray, counts: np.ndarray, shown: np.ndarray, num_classes: int
                   ) -> np.ndarray:
    """The dense matrix among the classes `shown` (rows: true, columns: predicted, in `shown` order); when some
    classes are not shown, one last row and column count them together, so every row still sums to its class's
    support and the whole to the number of rows."""
    rest = len(shown) < num_classes
    position = np.full(num_classes, len(shown) if rest else -1, dtype=np.int64)
    position[shown] = np.arange(len(shown))
    matrix = np.zeros((len(shown) + rest, len(shown) + rest), dtype=np.int64)
    np.add.at(matrix, (position[true], position[pred]), counts)
    return matrix


def write_confusion_csv(path: Path, names: list[str], true: np.ndarray, pred: np.ndarray, counts: np.ndarray
                        ) -> None:
    """The whole matrix as `true,predicted,count`, one row per nonzero cell (class names, csv-quoted)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true", "predicted", "count"])
    writer.writerows(zip((names[t] for t in true), (names[p] for p in pred), counts.tolist(), strict=True))
    write_text_atomic(path, buffer.getvalue())


def save_confusion_png(matrix: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """sklearn's confusion-matrix plot of a (small) dense matrix (rows: true class, columns: predicted).

    Callers pass at most VIEW_CLASSES classes (and one for the rest), so the figure has a bounded size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        shown = [n if len(n) <= 24 else n[:23] + "\u2026" for n in names]  # long names would crowd the axes
        sk.ConfusionMatrixDisplay(matrix, display_labels=shown).plot(cmap="Blues", colorbar=False, ax=ax,
                                                                     values_format="d", xticks_rotation=45)
        ax.set_title(title)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def write_classification_reports(labels: np.ndarray, preds: np.ndarray, names: list[str], out_dir: Path,
                                 split: str) -> str:
    """For a single-label split: {split}_per_class.json and {split}_confusion_matrix.csv with every class, and
    {split}_confusion_matrix.png of at most VIEW_CLASSES classes (the most confused past that); returns the
    table the log shows (bounded the same way)."""
    report = per_class_report(labels, preds, names)
    write_text_atomic(out_dir / f"{split}_per_class.json", json.dumps(report, indent=2))
    true, pred, counts = confusion_cells(labels, preds, len(names))
    csv_name = f"{split}_confusion_matrix.csv"
    write_confusion_csv(out_dir / csv_name, names, true, pred, counts)
    shown = most_confused(true, pred, counts, len(names), VIEW_CLASSES)
    title = f"{split} confusion matrix"
    if len(shown) < len(names):
        title += f": the {len(shown)} most-confused of {len(names):,} classes\n(every class: {csv_name})"
    shown_names = [names[i] for i in shown]
    if len(shown) < len(names):
        shown_names.append(f"({len(names) - len(shown):,} others)")
    save_confusion_png(confusion_view(true, pred, counts, shown, len(names)), shown_names,
                       out_dir / f"{split}_confusion_matrix.png", title)
    return format_report(report, f"{split}_per_class.json")


def format_report(report: dict[str, dict], full: str = "the per-class file") -> str:
    """The per-class report as the table the log shows: every class up to VIEW_CLASSES, else the weakest ones
    and a line naming `full`, the file that holds them all."""
    names = list(report) if len(report) <= VIEW_CLASSES else weakest_classes(report, VIEW_CLASSES)
    width = max([len(n) for n in names] + [5])
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for name in names:
        r = report[name]
        lines.append(f"{name:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    if len(names) < len(report):
        lines.append(f"(the {len(names)} classes of lowest F1 of {len(report):,}; every class: {full})")
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
