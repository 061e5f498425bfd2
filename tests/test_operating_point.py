"""A binary classifier's operating point (tasks/operating_point.py, train/operating_point.py): the cut on the
positive class tuned on eval for F1 or a target precision/recall, stored in config.json, used by predict, drawn on
the precision/recall curve in report.html; refused in one line where it cannot apply."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
from conftest import FILLER, WORDS, cli_error

import tunesuite
from tunesuite.tasks import calibration
from tunesuite.tasks import operating_point as point


def test_the_cut_meets_a_target_or_maximises_f1():
    probs = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2])
    positive = np.array([1, 1, 0, 1, 0, 1, 0, 0], dtype=bool)
    assert point.choose(probs, positive) == (pytest.approx(0.35), True)  # top 6: P 4/6, R 1 -> F1 0.8
    cut, reached = point.choose(probs, positive, target_precision=1.0)
    assert cut == pytest.approx(0.85) and reached  # only the top two are surely positive
    cut, reached = point.choose(probs, positive, target_recall=0.75)
    assert cut == pytest.approx(0.65) and reached  # three of four positives, at the best precision 3/4
    assert point.scores_at(probs, positive, cut) == {"precision": 0.75, "recall": 0.75, "f1": 0.75}
    assert point.choose(probs, np.zeros(8, dtype=bool), target_precision=0.5)[1] is False  # out of reach: said so


def write_binary(folder, seed: int = 0):
    """sport vs music sentences, 15% of them with a word of the other topic mixed in (scores not all extreme)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 120), ("validation", 60), ("test", 40)):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for i in range(n):
                topic, other = ("sport", "music") if i % 2 else ("music", "sport")
                words = rng.sample(WORDS[topic], 2) + rng.sample(FILLER, 3)
                words += rng.sample(WORDS[other], 2) if rng.random() < 0.15 else []
                rng.shuffle(words)
                writer.writerow([" ".join(words), topic])
    return folder


def test_a_target_recall_is_tuned_stored_drawn_and_used(tiny_bert, tmp_path):
    data = write_binary(tmp_path / "data")
    out = tmp_path / "run"
    results = tunesuite.finetune("text-classification", str(tiny_bert), str(data), mode="full", target_recall=0.95,
                                 output_dir=str(out), num_train_epochs=2, learning_rate=3e-3, seed=0,
                                 save_strategy="no", eval_strategy="no", disable_tqdm=True)
    config = json.loads((out / "config.json").read_text())
    cut = config[point.THRESHOLD]
    assert 0 < cut < 1 and results["eval_threshold"] == cut
    assert results["eval_recall_at_threshold"] >= 0.95 and "test_precision_at_threshold" in results
    assert (out / "eval_pr_curve.png").is_file() and (out / "test_pr_curve.png").is_file()
    assert "Precision/recall curve and operating point" in (out / "report.html").read_text()
    predictor = tunesuite.load(out)
    texts = [row["text"] for row in csv.DictReader((data / "test.csv").open())]
    probs = calibration.softmax(predictor.logits(texts).numpy())
    positive = predictor.config.id2label[point.POSITIVE]
    predicted = [row["label"] for row in predictor.predict(texts)]
    assert predicted == [positive if p > cut else predictor.config.id2label[0] for p in probs[:, 1]]


def test_targets_are_refused_where_they_cannot_apply(tiny_bert, topic_data, tmp_path, capsys):
    task = tunesuite.registry.TASKS["text-classification"]
    base = ["--model", str(tiny_bert), "--dataset", str(topic_data), "--output-dir", str(tmp_path / "r"),
            "--num-train-epochs", "1", "--save-strategy", "no"]
    line = cli_error(capsys, task, [*base, "--target-precision", "0.9"])
    assert "--target-precision" in line and "3 classes" in line  # three topics: no single operating point
    line = cli_error(capsys, task, [*base, "--target-recall", "1.5", "--overwrite-output-dir"])
    assert "--target-recall 1.5" in line and "(0, 1]" in line
