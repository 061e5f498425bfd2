"""Metrics from the libraries that own them: scikit-learn (classification, regression, per-class reports,
confusion matrices), scipy (correlations) and jiwer (WER/CER). We only pick the definitions and name the keys.

Classifier metrics from predicted probabilities (scikit-learn, scipy): ROC-AUC, average precision, the ROC curve.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as sk

from tunesuite.files import atomic_path, write_text_atomic

# Past this many classes, the confusion-matrix picture and the per-class tables (page, log) show only this many:
# the most confused / the weakest. The files beside them ({split}_per_class.json, {split}_confusion_matrix.csv)
# hold every class, so neither the page nor the figure grows with the class count.
VIEW_CLASSES = 30


def weakest_classes(report: dict[str, dict], limit: int) -> list[str]:
    """The `limit` classes of a per-class report with the lowest F1 (larger support first among equals), in
    the report's order."""
    order = {name: i for i, name in enumerate(report)}
    worst = sorted(report, key=lambda n: (report[n]["f1"], -report[n]["support"], order[n]))[:limit]
    return sorted(worst, key=order.__getitem__)


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


@contextlib.contextmanager
def saved_figure(path: Path, size: tuple[float, float], title: str) -> Iterator[Any]:
    """A matplotlib axes to draw on; once the block returns, titled, laid out and written atomically to `path`.
    The figure is closed either way, so figures never pile up over many splits or runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    try:
        yield ax
        ax.set_title(title)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def save_confusion_png(matrix: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """sklearn's confusion-matrix plot of a (small) dense matrix (rows: true class, columns: predicted).

    Callers pass at most VIEW_CLASSES classes (and one for the rest), so the figure has a bounded size."""
    size = max(4.0, 0.5 * len(names) + 2)
    with saved_figure(path, (size, size), title) as ax:
        shown = [n if len(n) <= 24 else n[:23] + "\u2026" for n in names]  # long names would crowd the axes
        sk.ConfusionMatrixDisplay(matrix, display_labels=shown).plot(cmap="Blues", colorbar=False, ax=ax,
                                                                     values_format="d", xticks_rotation=45)


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


def error_rates_of(inputs: Callable[[Any], tuple[list[str], list[str]]]) -> Callable[[Any], dict[str, float]]:
    """The Trainer's compute_metrics for a transcription task: `inputs` turns its EvalPrediction into
    (hypotheses, references), scored as WER and CER."""

    def compute(eval_pred: Any) -> dict[str, float]:
        hypotheses, references = inputs(eval_pred)
        return word_char_error_rates(references, hypotheses)

    return compute


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
    from sklearn.metrics import RocCurveDisplay

    with saved_figure(path, (4.5, 4.5), title) as ax:
        RocCurveDisplay.from_predictions(labels, positive, name=name, ax=ax, plot_chance_level=True)
