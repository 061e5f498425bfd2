"""--tune-thresholds (tasks/thresholds.py, train/thresholds.py): per-class thresholds tuned on eval for F1, stored in
config.json, used by the predictor; refused in one line on a single-label classifier."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import FILLER, WORDS, cli_error

import tunesuite
from tunesuite.tasks import metrics, thresholds


def test_the_cut_of_highest_f1_falls_between_distinct_scores():
    probs = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    assert thresholds.best_threshold(probs, np.array([1, 1, 1, 0, 0])) == pytest.approx(0.25)  # all three found
    assert thresholds.best_threshold(probs, np.array([1, 0, 0, 0, 0])) == pytest.approx(0.85)
    assert thresholds.best_threshold(probs, np.zeros(5)) == thresholds.DEFAULT  # nothing to find: the default
    tied = np.array([0.6, 0.6, 0.6, 0.1])
    assert thresholds.best_threshold(tied, np.array([1, 0, 1, 0])) == pytest.approx(0.35)  # never inside the tie


def write_multi_label(folder, seed: int = 0):
    """Sentences about one or two topics, labelled with those topics (jsonl: a list per row)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 150), ("validation", 60), ("test", 60)):
        rows = []
        for _ in range(n):
            topics = rng.sample(list(WORDS), rng.choice([1, 2]))
            words = sum((rng.sample(WORDS[t], 2) for t in topics), []) + rng.sample(FILLER, 2)
            rng.shuffle(words)
            rows.append(json.dumps({"text": " ".join(words), "label": topics}))
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def test_tuned_thresholds_are_stored_scored_and_used(tiny_bert, tmp_path):
    data = write_multi_label(tmp_path / "data")
    out = tmp_path / "run"
    results = tunesuite.finetune("text-classification", str(tiny_bert), str(data), mode="full", tune_thresholds=True,
                                 output_dir=str(out), num_train_epochs=3, learning_rate=3e-3, seed=0,
                                 save_strategy="no", eval_strategy="no", disable_tqdm=True)
    cuts = json.loads((out / "config.json").read_text())[thresholds.THRESHOLDS]
    assert len(cuts) == 3 and cuts != [0.5] * 3
    assert results["eval_macro_f1_tuned"] >= results["eval_macro_f1"]
    assert "test_micro_f1_tuned" in json.loads((out / "all_results.json").read_text())
    predictor = tunesuite.load(out)
    texts = [json.loads(line)["text"] for line in (data / "test.jsonl").read_text().splitlines()][:20]
    probs = metrics.sigmoid(predictor.logits(texts).numpy())
    names = [predictor.config.id2label[i] for i in range(3)]
    wanted = [[n for n, p, t in zip(names, row, cuts, strict=True) if p > t] for row in probs]
    assert [row["labels"] for row in predictor.predict(texts)] == wanted
    assert wanted != [[n for n, p in zip(names, row, strict=True) if p > 0.5] for row in probs]  # they matter here


def test_tune_thresholds_is_refused_on_a_single_label_classifier(tiny_bert, topic_data, tmp_path, capsys):
    line = cli_error(capsys, tunesuite.registry.TASKS["text-classification"],
                     ["--model", str(tiny_bert), "--dataset", str(topic_data), "--output-dir", str(tmp_path / "r"),
                      "--tune-thresholds", "--num-train-epochs", "1", "--save-strategy", "no"])
    assert "--tune-thresholds" in line and "single_label" in line
