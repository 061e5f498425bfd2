"""Audio classification beyond the task x mode matrix (test_matrix.py runs every mode): transformers.pipeline
parity, ROC-AUC / average precision against scikit-learn, class weights, crops and padding, bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import soundfile as sf
from asr_fixtures import RATE
from audio_fixtures import PITCHES, pitch_clip, write_pitch_csvs
from conftest import cli_error
from sklearn.metrics import average_precision_score, roc_auc_score

import tunesuite
from tunesuite.tasks import metrics

FAST = {"per_device_train_batch_size": 8, "warmup_steps": 0, "disable_tqdm": True, "seed": 3, "save_strategy": "no",
        "eval_strategy": "no"}


@pytest.mark.parametrize("mode", ["full", "frozen"])
def test_pipeline_gives_the_labels_of_tunesuite_load(trained, mode):
    from transformers import pipeline

    out = trained("audio", mode).out
    rng = random.Random(7)
    clips = [pitch_clip(PITCHES[name], rng) for name in ("low", "mid", "high", "mid", "low", "high")]
    ours = tunesuite.load(out).predict(clips)
    theirs = pipeline("audio-classification", model=str(out), device="cpu")([c.copy() for c in clips])
    assert [p["label"] for p in ours] == [t[0]["label"] for t in theirs]
    assert [p["score"] for p in ours] == pytest.approx([t[0]["score"] for t in theirs], abs=1e-4)
    assert {p["label"] for p in ours} == set(PITCHES)  # the comparison covers every class


def test_roc_auc_and_average_precision_match_scikit_learn():
    labels = np.array([0, 1, 2, 2, 1, 0, 2, 1])
    logits = np.random.default_rng(0).normal(size=(8, 3))
    probs = metrics.softmax(logits)
    assert metrics.roc_auc(labels, probs) == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    binary = np.array([0, 1, 1, 0, 1, 0])
    two = metrics.softmax(np.array([[2, 0], [0, 1], [1, 0], [0, 2], [0, 3], [1, 1]], dtype=float))
    assert metrics.roc_auc(binary, two) == pytest.approx(roc_auc_score(binary, two[:, 1]))
    missing = np.array([0, 0, 2, 2, 0, 2, 2, 0])  # class 1 absent: macro over the classes present
    assert metrics.roc_auc(missing, probs) == pytest.approx(np.mean(
        [roc_auc_score(missing == c, probs[:, c]) for c in (0, 2)]))
    assert metrics.roc_auc(np.zeros(8, int), probs) is None
    hot = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]])  # class 2 always on: no ROC curve
    multi = metrics.multi_label_scores(hot, metrics.sigmoid(logits[:4]))
    assert multi["roc_auc"] == pytest.approx(roc_auc_score(hot[:, :2], metrics.sigmoid(logits[:4, :2])))
    assert multi["average_precision"] == pytest.approx(average_precision_score(hot[:, :2],
                                                                               metrics.sigmoid(logits[:4, :2])))


def test_class_weights_lift_minority_recall(tiny_w2v, tmp_path):
    """Two classes, 11:1 in training: the head barely learns the rare one unweighted; auto weights fix that."""
    data = write_pitch_csvs(tmp_path / "skewed", {"train": 36, "validation": 8, "test": 16},
                            classes={"low": 11, "high": 1}, seed=2)
    recall = {}
    for weights in (None, ["auto"]):
        out = tmp_path / f"run-{bool(weights)}"
        tunesuite.finetune("audio-classification", str(tiny_w2v), str(data), mode="frozen", output_dir=str(out),
                           learning_rate=3e-3, num_train_epochs=2, class_weights=weights, **FAST)
        recall[bool(weights)] = json.loads((out / "test_per_class.json").read_text())["high"]["recall"]
        config = json.loads((out / "config.json").read_text())
        assert config.get("tunesuite_class_weights") == ([6.0, pytest.approx(36 / 66, abs=1e-4)] if weights
                                                         else None)
    assert recall[True] > recall[False], recall
    assert (tmp_path / "run-True" / "test_roc_curve.png").is_file()  # binary: the ROC curve


def test_explicit_class_weights_are_checked(capsys, tiny_w2v, pitch_data, tmp_path):
    base = ["--model", str(tiny_w2v), "--dataset", str(pitch_data), "--output-dir", str(tmp_path / "o")]
    line = cli_error(capsys, "audio-classification", [*base, "--class-weights", "1", "3"])
    assert "2 weights for 3 classes (high, low, mid)" in line


def test_long_clips_are_cropped_and_short_ones_padded(tiny_w2v, tmp_path, log):
    rng = random.Random(0)
    folder = write_pitch_csvs(tmp_path / "d", {"train": 12, "validation": 3})
    sf.write(folder / "wavs" / "train-0.wav", pitch_clip(PITCHES["low"], rng, seconds=3.0), RATE)  # a long one
    sf.write(folder / "wavs" / "validation-0.wav", pitch_clip(PITCHES["low"], rng, seconds=1.0), RATE)
    sf.write(folder / "wavs" / "train-1.wav", pitch_clip(PITCHES["mid"], rng, seconds=0.002), RATE)  # 32 samples
    result = tunesuite.finetune("audio-classification", str(tiny_w2v), str(folder), mode="frozen",
                                output_dir=str(tmp_path / "o"), max_duration=0.5, num_train_epochs=1, **FAST)
    assert "eval_accuracy" in result
    assert "train split: cropped 1 clip(s) longer than 2.0 s to their centre 2.0 s" in log.text  # 4 crops' worth
    assert "eval split: cropped 1 clip(s) longer than 0.5 s" in log.text
    assert "train split: padded 1 clip(s) shorter than" in log.text
    assert "feature cache off: augmentation is on" in log.text  # random crops differ every epoch


def test_bad_input_is_one_error_line(capsys, tiny_w2v, tmp_path):
    data = write_pitch_csvs(tmp_path / "d", {"train": 6, "validation": 3})
    base = ["--model", str(tiny_w2v), "--output-dir", str(tmp_path / "o")]
    rows = (data / "validation.csv").read_text().splitlines()
    (data / "validation.csv").write_text("\n".join([*rows[:-1], rows[-1].rsplit(",", 1)[0] + ",squeak"]) + "\n")
    assert "label 'squeak' in the eval split never occurs in train" in cli_error(
        capsys, "audio-classification", [*base, "--dataset", str(data)])
    folder = tmp_path / "folders" / "train"
    for name in ("low", "high"):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            sf.write(folder / name / f"{i}.wav", pitch_clip(PITCHES[name], random.Random(i)), RATE)
    (folder / "mid").mkdir()  # a class folder left empty
    line = cli_error(capsys, "audio-classification", [*base, "--dataset", str(tmp_path / "folders")])
    assert "label folder" in line and "mid holds no audio file" in line
    (folder / "mid" / "0.wav").write_bytes(b"RIFF-not-really-a-wav")
    line = cli_error(capsys, "audio-classification", [*base, "--dataset", str(tmp_path / "folders"),
                                                      "--skip-bad-files"])
    assert "class 'mid' has no (readable) training audio" in line


def test_a_speech_recognition_run_is_the_encoder_of_a_keyword_classifier(trained, pitch_data, tmp_path, log, capsys):
    """A finished CTC run of this suite starts an audio classifier (its encoder, a new head); its LoRA run is
    refused with what to do instead."""
    ctc_run = trained("speech", "full").out
    result = tunesuite.finetune("audio-classification", str(ctc_run), str(pitch_data), mode="frozen",
                                output_dir=str(tmp_path / "kws"), learning_rate=1e-2, num_train_epochs=2, **FAST)
    assert "starting from the weights of the finished automatic-speech-recognition run" in log.text
    assert result["trainable_percent"] < 50 and (tmp_path / "kws" / "model.safetensors").is_file()
    config = json.loads((tmp_path / "kws" / "config.json").read_text())
    assert config["architectures"][0].endswith("ForSequenceClassification")
    assert sorted(config["id2label"].values()) == sorted(PITCHES)
    lora_run = trained("speech", "lora").out
    err = cli_error(capsys, "audio-classification", ["--model", str(lora_run), "--dataset", str(pitch_data),
                                                     "--output-dir", str(tmp_path / "no")])
    assert "its adapter or prompts belong to that task" in err and "tunesuite export" in err


def test_frozen_feature_cache_matches_the_normal_path(tiny_w2v, pitch_data, tmp_path, log):
    """Frozen audio runs train projector + classifier on the mean-pooled encoder states (the task's exact split
    of the model), and end where the uncached run ends."""
    flags = {**FAST, "mode": "frozen", "learning_rate": 1e-2, "num_train_epochs": 3, "augment": False}
    cached = tunesuite.finetune("audio-classification", str(tiny_w2v), str(pitch_data),
                                output_dir=str(tmp_path / "cached"), **flags)
    assert "feature cache: backbone features of" in log.text and "feature_cache_seconds" in cached
    normal = tunesuite.finetune("audio-classification", str(tiny_w2v), str(pitch_data),
                                output_dir=str(tmp_path / "normal"), cache_features="never", **flags)
    assert "feature cache off: turned off by --cache-features never" in log.text
    assert cached["test_accuracy"] == pytest.approx(normal["test_accuracy"], abs=0.05)
    clips = [pitch_clip(PITCHES[name], random.Random(3)) for name in PITCHES]
    first, second = tunesuite.load(tmp_path / "cached"), tunesuite.load(tmp_path / "normal")
    assert [p["label"] for p in first.predict(clips)] == [p["label"] for p in second.predict(clips)]
