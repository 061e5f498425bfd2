"""`tunesuite audit` (choose/audit.py): out-of-fold predictions on K folds -> cleanlab's ranking -> label_issues.csv
and report.html. Labels flipped on purpose must come out on top; a missing cleanlab is one line naming the extra."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS, write_topic_csvs

from tunesuite import cli
from tunesuite.errors import TunesuiteError
from tunesuite.tasks import label_issues

FAST = {"save_strategy": "no", "eval_strategy": "no", "disable_tqdm": True}


def _flip(path, rows: list[int], seed: int = 0) -> dict[int, str]:
    """Give `rows` of a text,label CSV another topic; returns row -> the label it had."""
    rng = random.Random(seed)
    lines = list(csv.reader(path.open()))
    had = {}
    for row in rows:
        text, label = lines[row + 1]
        had[row] = label
        lines[row + 1] = [text, rng.choice([t for t in WORDS if t != label])]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(lines)
    return had


def test_flipped_text_labels_are_found(pretrained_bert, tmp_path, capsys):
    data = write_topic_csvs(tmp_path / "data", n_train=60, n_eval=12, seed=3)
    flipped = _flip(data / "train.csv", [2, 17, 33, 50])
    out = tmp_path / "audit"
    cli.main(["audit", "text-classification", "--model", str(pretrained_bert), "--dataset", str(data),
              "--folds", "3", "--output-dir", str(out), "--learning-rate", "5e-2", "--num-train-epochs", "8",
              "--save-strategy", "no", "--eval-strategy", "no"])
    printed = capsys.readouterr().out
    assert "rows probably mislabelled" in printed and "label_issues.csv" in printed
    rows = list(csv.DictReader((out / label_issues.FILE).open()))
    found = {int(r["row"]) for r in rows if r["split"] == "train"}
    assert len(found) >= 2 and found <= set(flipped), rows  # cleanlab is cautious on 72 rows: no false alarm
    for r in rows:
        assert r["suggested"] == flipped[int(r["row"])] and r["given"] != r["suggested"] and r["input"]
    assert [float(r["score"]) for r in rows] == sorted(float(r["score"]) for r in rows)  # most doubtful first
    assert "Probable label errors" in (out / "report.html").read_text()


def test_cleanlab_ranks_the_rows_whose_probabilities_disagree():
    probs = np.array([[0.9, 0.1]] * 20 + [[0.1, 0.9]] * 20 + [[0.05, 0.95], [0.97, 0.03]])
    labels = np.array([0] * 20 + [1] * 20 + [0, 1])
    found = label_issues.issues(probs, labels, ["a", "b"], [("train", i) for i in range(42)], ["x"] * 42)
    assert [(f.row, f.given, f.suggested) for f in found] == [(41, "b", "a"), (40, "a", "b")]


def test_a_missing_cleanlab_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)
    with pytest.raises(TunesuiteError, match=r"pip install 'tunesuite\[audit\]'"):
        label_issues.require_cleanlab()


def test_audit_refuses_one_fold(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["audit", "text-classification", "--model", "m", "--dataset", "d", "--folds", "1"])
    assert exit_.value.code == 2 and "--folds 1" in capsys.readouterr().err


def test_image_audit_lists_files(tiny_vit, tmp_path):
    import json
    import shutil

    from image_fixtures import write_image_folder

    from tunesuite.choose.audit import audit

    data = write_image_folder(tmp_path / "images", {"train": 10, "validation": 2})
    shutil.move(data / "train" / "red" / "3.png", data / "train" / "blue" / "was-red.png")  # a wrong label
    out = tmp_path / "audit"
    result = audit("image-classification", str(tiny_vit), str(data), folds=2, output_dir=str(out),
                   learning_rate=5e-2, num_train_epochs=30, **FAST)
    summary = json.loads((out / "audit.json").read_text())
    assert summary["rows"] == result["rows"] == 36 and summary["folds"] == 2 and summary["mode"] == "frozen"
    assert sorted(summary["classes"]) == ["blue", "green", "red"]
    with np.load(out / "out_of_fold.npz") as saved:
        assert saved["probabilities"].shape == (36, 3)
        assert np.allclose(saved["probabilities"].sum(1), 1)
    rows = list(csv.DictReader((out / label_issues.FILE).open()))
    assert [(Path(r["input"]).name, r["given"], r["suggested"]) for r in rows] == [("was-red.png", "blue", "red")]
    assert "was-red.png" in (out / "report.html").read_text()


def test_the_trust_demo_plants_what_it_measures(tmp_path):
    from tunesuite.demos import trust

    clean = write_topic_csvs(tmp_path / "clean", n_train=50, n_eval=10)
    before = list(csv.reader((clean / "train.csv").open()))[1:]
    flipped = trust.flip_labels(clean, 0.1)
    after = list(csv.reader((clean / "train.csv").open()))[1:]
    changed = {i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b}
    assert len(flipped) == 5 and changed == set(flipped)
    assert all(after[i][1] != label == before[i][1] for i, label in flipped.items())
    planted = trust.leak(clean, tmp_path / "leaky", 3)
    train = list(csv.reader((tmp_path / "leaky" / "train.csv").open()))[1:]
    assert planted == {"exact": 3, "near": 3} and len(train) == 56
    test = {text for text, _ in list(csv.reader((clean / "test.csv").open()))[1:]}
    assert sum(text in test for text, _ in train[50:]) == 3  # the near copies differ as written


def test_folds_of_a_manifest_keep_its_relative_files_readable(tmp_path):
    from datasets import load_from_disk

    from tunesuite.choose.compare import folds

    (tmp_path / "data" / "wavs").mkdir(parents=True)
    rows = [[f"wavs/{i}.wav", "a" if i % 2 else "b", "a note " * 60] for i in range(6)]  # a note too long for a path
    for name, *_ in rows:
        (tmp_path / "data" / name).write_bytes(b"RIFF")
    with (tmp_path / "data" / "train.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "note"], *rows])
    paths = folds.write_folds({"dataset": str(tmp_path / "data")}, tmp_path / "folds", 2, 0, with_test=False)
    fold = load_from_disk(str(paths[0]))
    assert set(fold) == {"train", "validation"}
    files = [*fold["train"]["path"], *fold["validation"]["path"]]
    assert sorted(files) == sorted(str(tmp_path / "data" / name) for name, *_ in rows)
    assert sorted([*fold["train"]["label"], *fold["validation"]["label"]]) == ["a"] * 3 + ["b"] * 3
