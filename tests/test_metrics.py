"""tasks/metrics.py against references computed independently: scikit-learn, scipy.stats and jiwer.

Where our definition differs from the library default, the test says so."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from tunesuite.tasks import metrics

# 4 classes; class 2 occurs in the labels but is never predicted; class 3 occurs in neither.
LABELS = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1, 0])
PREDS = np.array([0, 1, 1, 1, 0, 0, 1, 0, 1, 0])
NUM_CLASSES = 4


def test_single_label_accuracy_and_macro_f1():
    out = metrics.single_label(LABELS, PREDS, NUM_CLASSES)
    assert out["accuracy"] == pytest.approx(sk.accuracy_score(LABELS, PREDS))
    # Macro over the classes present in labels or predictions, like sklearn's default (labels=None); class 2
    # (never predicted) counts with F1 0, class 3 (absent everywhere) does not count at all.
    assert out["macro_f1"] == pytest.approx(sk.f1_score(LABELS, PREDS, average="macro", zero_division=0))
    every_class = sk.f1_score(LABELS, PREDS, average="macro", labels=range(NUM_CLASSES), zero_division=0)
    assert out["macro_f1"] > every_class  # sklearn with labels=range(4) averages class 3's 0 in too
    assert out["macro_f1"] == pytest.approx(every_class * NUM_CLASSES / 3)


def test_per_class_report_and_confusion_matrix():
    names = ["a", "b", "c", "d"]
    report = metrics.per_class_report(LABELS, PREDS, names)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        LABELS, PREDS, labels=range(NUM_CLASSES), zero_division=0)
    assert list(report) == names
    for i, name in enumerate(names):
        assert report[name]["precision"] == pytest.approx(precision[i])
        assert report[name]["recall"] == pytest.approx(recall[i])
        assert report[name]["f1"] == pytest.approx(f1[i])
        assert report[name]["support"] == support[i]
    assert report["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    expected = sk.confusion_matrix(LABELS, PREDS, labels=range(NUM_CLASSES))
    np.testing.assert_array_equal(metrics.confusion(LABELS, PREDS, NUM_CLASSES), expected)


def test_multi_label_subset_accuracy_micro_and_macro_f1():
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    preds = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 1], [0, 0, 0]])
    out = metrics.multi_label(labels, preds)
    assert out["subset_accuracy"] == pytest.approx(sk.accuracy_score(labels, preds))  # sklearn: exact match
    assert out["subset_accuracy"] == pytest.approx(2 / 5)
    assert out["micro_f1"] == pytest.approx(sk.f1_score(labels, preds, average="micro", zero_division=0))
    assert out["macro_f1"] == pytest.approx(sk.f1_score(labels, preds, average="macro", zero_division=0))
    # A class that is neither true nor predicted anywhere counts with F1 0 (sklearn's zero_division=0).
    empty = np.hstack([labels, np.zeros((5, 1), int)]), np.hstack([preds, np.zeros((5, 1), int)])
    assert metrics.multi_label(*empty)["macro_f1"] == pytest.approx(
        sk.f1_score(*empty, average="macro", zero_division=0))


def test_regression_errors_and_correlations():
    labels = np.array([1.0, 2.0, 2.0, 3.5, 5.0, 4.0, 0.5])
    preds = np.array([1.2, 1.9, 2.5, 3.0, 4.0, 4.4, 1.5])
    out = metrics.regression(labels, preds)
    assert out["mse"] == pytest.approx(sk.mean_squared_error(labels, preds))
    assert out["mae"] == pytest.approx(sk.mean_absolute_error(labels, preds))
    assert out["r2"] == pytest.approx(sk.r2_score(labels, preds))
    assert out["pearson"] == pytest.approx(stats.pearsonr(labels, preds).statistic)
    assert out["spearman"] == pytest.approx(stats.spearmanr(labels, preds).statistic)  # ties in the labels
    # Constant predictions: no correlation is defined, so none is reported (scipy would warn and give nan).
    assert {"pearson", "spearman"}.isdisjoint(metrics.regression(labels, np.full(7, 2.0)))


def test_word_and_character_error_rates():
    refs = ["the cat sat", "a b c d", "hello world"]
    hyps = ["the cat sit", "a b d", "hello world"]
    out = metrics.word_char_error_rates(refs, hyps)
    assert out["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert out["cer"] == pytest.approx(jiwer.cer(refs, hyps))
    assert out["wer"] == pytest.approx(2 / 9)  # corpus level: 1 substitution + 1 deletion over 9 words
    # Empty references are dropped (jiwer refuses them); all empty: nan, not a division by zero.
    with_empty = metrics.word_char_error_rates([*refs, " "], [*hyps, "noise"])
    assert with_empty == pytest.approx(out)
    assert np.isnan(metrics.word_char_error_rates([""], ["x"])["wer"])
