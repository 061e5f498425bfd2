"""Our metric wiring: which keys each task reports and that they hold the right numbers on small inputs counted by
hand; the reports a split writes; `--metric` with evaluate metrics from local script folders (offline)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import cli_error

import tunesuite
from tunesuite.registry import Prepared
from tunesuite.tasks import classification, metrics

# 4 classes; class 2 occurs in the labels but is never predicted; class 3 occurs in neither.
LABELS = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1, 0])
PREDS = np.array([0, 1, 1, 1, 0, 0, 1, 0, 1, 0])
NAMES = ["a", "b", "c", "d"]


def prepared(problem: str, names: list[str] | None = None) -> Prepared:
    return Prepared(processor=None, train=None, eval=None, test=None, model_kwargs={}, label_names=names,
                    problem_type=problem)


def eval_pred(predictions, labels):
    return SimpleNamespace(predictions=np.asarray(predictions, dtype=float), label_ids=np.asarray(labels))


def test_single_label_keys_and_values():
    logits = np.eye(4)[PREDS] * 3  # argmax is PREDS
    out = classification.compute_metrics(prepared(classification.SINGLE, NAMES))(eval_pred(logits, LABELS))
    assert set(out) == {"accuracy", "macro_f1", "roc_auc", "ece"}
    assert out["accuracy"] == pytest.approx(6 / 10)
    # F1 of a and b: precision 3/5, recall 3/4 -> 2/3 each; c: 0; d (in neither) does not count.
    assert out["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert 0 <= out["roc_auc"] <= 1


def test_multi_label_keys_and_values():
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    preds = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 1], [0, 0, 0]])
    out = classification.compute_metrics(prepared(classification.MULTI, ["x", "y", "z"]))(
        eval_pred(np.where(preds, 2.0, -2.0), labels))
    assert {"subset_accuracy", "micro_f1", "macro_f1", "roc_auc", "average_precision"} <= set(out)
    assert out["subset_accuracy"] == pytest.approx(2 / 5)  # rows 2 and 3 match exactly
    # tp 5, fp 1, fn 2 over all cells: micro F1 = 2*5 / (2*5 + 1 + 2)
    assert out["micro_f1"] == pytest.approx(10 / 13)
    # per class: x tp2 fn1 -> 4/5; y tp2 fp1 -> 4/5; z tp1 fn1 -> 2/3
    assert out["macro_f1"] == pytest.approx((4 / 5 + 4 / 5 + 2 / 3) / 3)


def test_regression_keys_and_values():
    labels, preds = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0])
    out = classification.compute_metrics(prepared(classification.REGRESSION))(eval_pred(preds, labels))
    assert out["mse"] == pytest.approx(1 / 4) and out["mae"] == pytest.approx(1 / 4)
    assert out["r2"] == pytest.approx(1 - 1 / 5)  # squared error 1 over a total sum of squares of 5
    assert out["spearman"] == pytest.approx(1.0)  # the same order
    centred = labels - labels.mean(), preds - preds.mean()
    assert out["pearson"] == pytest.approx((centred[0] @ centred[1]) / np.sqrt((centred[0] ** 2).sum()
                                                                               * (centred[1] ** 2).sum()))
    # constant predictions: no correlation is defined, so none is reported
    assert {"pearson", "spearman"}.isdisjoint(metrics.regression(labels, np.full(4, 2.0)))


def test_split_reports_keep_their_files_and_format(tmp_path):
    output = eval_pred(np.eye(4)[PREDS], LABELS)
    table = classification.write_reports(output, prepared(classification.SINGLE, NAMES), tmp_path, "test")
    report = json.loads((tmp_path / "test_per_class.json").read_text())
    assert list(report) == NAMES
    assert report["a"] == pytest.approx({"precision": 3 / 5, "recall": 3 / 4, "f1": 2 / 3, "support": 4})
    assert report["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["d"]["support"] == 0
    assert (tmp_path / "test_confusion_matrix.png").stat().st_size > 0
    assert not (tmp_path / "test_roc_curve.png").exists()  # four classes: no ROC curve
    assert all(name in table for name in NAMES) and "precision" in table
    binary = eval_pred(np.array([[2, 0], [0, 1], [1, 0], [0, 2]]), np.array([0, 1, 1, 1]))
    classification.write_reports(binary, prepared(classification.SINGLE, ["no", "yes"]), tmp_path, "eval")
    assert (tmp_path / "eval_roc_curve.png").stat().st_size > 0


def test_word_and_character_error_rates():
    refs, hyps = ["the cat sat", "a b c d", "hello world"], ["the cat sit", "a b d", "hello world"]
    out = metrics.word_char_error_rates(refs, hyps)
    assert out["wer"] == pytest.approx(2 / 9)  # corpus level: 1 substitution + 1 deletion over 9 words
    assert out["cer"] == pytest.approx(3 / 29)  # "a"->"i", "c " deleted: 3 edits over 29 reference characters
    # Empty references are dropped (jiwer refuses them); all empty: nan, not a division by zero.
    assert metrics.word_char_error_rates([*refs, " "], [*hyps, "noise"]) == pytest.approx(out)
    assert np.isnan(metrics.word_char_error_rates([""], ["x"])["wer"])


METRIC = '''import datasets
import evaluate


class {cls}(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="test metric", citation="", inputs_description="",
                                   features=datasets.Features({{"predictions": datasets.Value("{kind}"),
                                                               "references": datasets.Value("{kind}")}}))

    def _compute(self, predictions, references):
        {body}
'''


def metric_folder(root: Path, name: str, kind: str, body: str) -> Path:
    """A local evaluate metric script folder (FOLDER/FOLDER.py): what evaluate.load(path) reads offline."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}.py").write_text(METRIC.format(cls=name.title(), kind=kind, body=body))
    return folder


def test_metric_flag_adds_an_evaluate_metric_to_classification(tiny_bert, topic_data, tmp_path):
    body = ("same = [p == r for p, r in zip(predictions, references)]\n"
            "        return {'hits': sum(same) / len(same), 'accuracy': sum(same) / len(same), 'ids': same}")
    hits = metric_folder(tmp_path, "hits", "int64", body)
    out = tmp_path / "run"
    result = tunesuite.finetune("text-classification", str(tiny_bert), str(topic_data), output_dir=str(out),
                                max_steps=2, eval_strategy="no", save_strategy="no", disable_tqdm=True,
                                do_predict=True, metric=[str(hits)])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert result["test_hits"] == pytest.approx(np.mean([r["label"] == r["reference"] for r in rows]))
    assert "eval_hits" in result
    assert result["test_hits_accuracy"] == pytest.approx(result["test_accuracy"])  # a clash gets the metric's name
    assert "test_ids" not in result  # not a number
    assert json.loads((out / "all_results.json").read_text())["test_hits"] == result["test_hits"]


def test_metric_flag_scores_transcripts(tiny_w2v, tone_data, tmp_path):
    chars = metric_folder(tmp_path, "chars", "string",
                          "return {'rows': len(references), 'hypothesis_chars': sum(map(len, predictions))}")
    out = tmp_path / "run"
    result = tunesuite.finetune("asr", str(tiny_w2v), str(tone_data), output_dir=str(out), max_steps=1,
                                eval_strategy="no", save_strategy="no", disable_tqdm=True, do_predict=True,
                                per_device_train_batch_size=8, metric=[str(chars)])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert result["test_rows"] == len(rows) and {"test_wer", "test_cer"} <= set(result)
    assert result["test_hypothesis_chars"] == sum(len(r["hypothesis"]) for r in rows)


def test_bad_metric_is_one_error_line_before_any_data(capsys, tiny_bert, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("text,label\ngoal,sport\n")
    line = cli_error(capsys, "text-classification", ["--model", str(tiny_bert), "--dataset", str(data),
                                                     "--output-dir", str(tmp_path / "o"),
                                                     "--metric", str(tmp_path / "no-such-metric")])
    assert line.startswith("error: --metric ") and "no-such-metric" in line and "FOLDER/FOLDER.py" in line
