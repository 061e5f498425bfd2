"""Calibration: ECE and temperature scaling (tasks/calibration.py), --calibrate in a run (train/calibrate.py):
an overconfident model's ECE drops once scaled, the temperature lands in config.json and the predictor uses it,
and the flag is refused in one line where it cannot work."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
from conftest import WORDS, cli_error, make_sentence

import tunesuite
from tunesuite.tasks import calibration


def test_ece_counts_the_gap_between_confidence_and_accuracy():
    sure = np.array([[40.0, 0.0]] * 4)
    assert calibration.expected_calibration_error(sure, np.array([0, 0, 0, 0])) == pytest.approx(0.0)
    assert calibration.expected_calibration_error(sure, np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    logits = np.log([[0.7, 0.3]] * 10)  # 70% sure, right 7 times in 10: calibrated
    assert calibration.expected_calibration_error(logits, np.array([0] * 7 + [1] * 3)) == pytest.approx(0.0, abs=1e-6)
    assert calibration.expected_calibration_error(logits, np.array([0] * 4 + [1] * 6)) == pytest.approx(0.3)


def test_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    honest = rng.normal(size=(4000, 3)) * 1.5
    labels = np.array([rng.choice(3, p=p) for p in calibration.softmax(honest)])
    sharp = honest * 4  # the same ranking, four times too sure
    before = calibration.expected_calibration_error(sharp, labels)
    temp = calibration.fit_temperature(sharp, labels)
    after = calibration.expected_calibration_error(sharp, labels, temp)
    assert temp == pytest.approx(4, rel=0.15)
    assert before > 0.15 and after < 0.05


def write_noisy_topics(folder, flip: float = 0.3, seed: int = 0):
    """The topic problem with a share of labels (train and validation) replaced by another topic: a model that
    learns train by heart is sure of answers that are right only ~70% of the time."""
    rng = random.Random(seed)
    topics = list(WORDS)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 150), ("validation", 150), ("test", 150)):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for i in range(n):
                topic = topics[i % 3]
                label = rng.choice([t for t in topics if t != topic]) if rng.random() < flip else topic
                writer.writerow([make_sentence(rng, topic), label])
    return folder


@pytest.fixture(scope="module")
def calibrated_run(tiny_bert, tmp_path_factory):
    data = write_noisy_topics(tmp_path_factory.mktemp("noisy"))
    out = tmp_path_factory.mktemp("calibrated") / "run"
    results = tunesuite.finetune("text-classification", str(tiny_bert), str(data), mode="full", calibrate=True,
                                 output_dir=str(out), num_train_epochs=40, learning_rate=1e-2, seed=0,
                                 save_strategy="no", eval_strategy="no", disable_tqdm=True)
    return out, results, data


def test_calibrate_lowers_the_ece_of_an_overconfident_run(calibrated_run):
    out, results, _ = calibrated_run
    saved = json.loads((out / "all_results.json").read_text())
    for split in ("eval", "test"):
        assert saved[f"{split}_ece"] == pytest.approx(results[f"{split}_ece"])
        assert (out / f"{split}_reliability.png").is_file()
    assert saved["eval_ece"] > 0.1  # the run is overconfident
    assert saved["eval_ece_calibrated"] < saved["eval_ece"]
    assert saved["test_ece_calibrated"] < saved["test_ece"]
    assert json.loads((out / "config.json").read_text())[calibration.TEMPERATURE] > 1  # cooled down
    assert "Reliability diagram" in (out / "report.html").read_text()
    card = (out / "README.md").read_text()
    assert "ece_calibrated" in card


def test_the_predictor_divides_by_the_temperature(calibrated_run):
    out, _, data = calibrated_run
    texts = [row["text"] for row in csv.DictReader((data / "test.csv").open())][:8]
    predictor = tunesuite.load(out)
    temp = predictor.config.tunesuite_temperature
    logits = predictor.logits(texts).numpy()
    scores = [row["score"] for row in predictor.predict(texts)]
    assert scores == pytest.approx(calibration.softmax(logits, temp).max(-1), abs=1e-5)
    assert scores != pytest.approx(calibration.softmax(logits).max(-1), abs=1e-3)


def _run_argv(model, data, out, *extra):
    return ["--model", str(model), "--dataset", str(data), "--output-dir", str(out), "--calibrate",
            "--num-train-epochs", "1", "--save-strategy", "no", *extra]


def test_calibrate_is_refused_on_regression_and_multi_label(tiny_bert, tmp_path, capsys):
    task = tunesuite.registry.TASKS["text-classification"]
    scores = tmp_path / "scores"
    scores.mkdir()
    for split in ("train", "validation"):
        (scores / f"{split}.csv").write_text("text,label\n" + "".join(f"goal team {i},{i / 7:.3f}\n"
                                                                      for i in range(20)))
    line = cli_error(capsys, task, _run_argv(tiny_bert, scores, tmp_path / "r1"))
    assert "--calibrate" in line and "regression" in line
    multi = tmp_path / "multi"
    multi.mkdir()
    for split in ("train", "validation"):
        (multi / f"{split}.jsonl").write_text("".join(json.dumps({"text": f"goal oven {i}", "label": ["sport"] if i % 2
                                                                  else ["sport", "cooking"]}) + "\n"
                                                      for i in range(20)))
    line = cli_error(capsys, task, _run_argv(tiny_bert, multi, tmp_path / "r2"))
    assert "--calibrate" in line and "multi_label" in line


def test_calibrate_is_refused_without_an_eval_split(tiny_bert, topic_data, tmp_path, capsys):
    only_train = tmp_path / "only"
    only_train.mkdir()
    (only_train / "train.csv").write_text((topic_data / "train.csv").read_text())
    line = cli_error(capsys, tunesuite.registry.TASKS["text-classification"],
                     _run_argv(tiny_bert, only_train, tmp_path / "r", "--validation-split-percentage", "0",
                               "--eval-strategy", "no"))
    assert "--calibrate" in line and "eval split" in line


def test_calibrate_in_frozen_image_and_audio_runs(tiny_vit, image_data, tiny_w2v, pitch_data, tmp_path):
    """The frozen feature cache trains the head on cached features: the temperature is still fitted and saved."""
    for task, model, data in (("image-classification", tiny_vit, image_data),
                              ("audio-classification", tiny_w2v, pitch_data)):
        out = tmp_path / task
        results = tunesuite.finetune(task, str(model), str(data), mode="frozen", calibrate=True, output_dir=str(out),
                                     num_train_epochs=1, save_strategy="no", eval_strategy="no", disable_tqdm=True)
        assert {"eval_ece", "eval_ece_calibrated", "test_ece_calibrated"} <= set(results)
        assert json.loads((out / "config.json").read_text())[calibration.TEMPERATURE] > 0
        assert (out / "test_reliability.png").is_file()
