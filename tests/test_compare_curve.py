"""`compare --shots`: the data-efficiency curve (zero-shot at 0, few-shot and trained modes at K per class)."""

from __future__ import annotations

import json

import pytest
from datasets import load_from_disk

import tunesuite
from tunesuite.choose.compare import curve
from tunesuite.errors import TunesuiteError

FLAGS = {"num_train_epochs": 1, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16,
         "eval_strategy": "no", "label_prompt": "{label}"}


def test_shots_draw_k_rows_per_class_seeded(small_topics, tmp_path):
    user = {"dataset": str(small_topics)}
    first = load_from_disk(str(curve.write_draw(user, tmp_path / "a", 2, seed=0)))
    again = load_from_disk(str(curve.write_draw(user, tmp_path / "b", 2, seed=0)))
    other = load_from_disk(str(curve.write_draw(user, tmp_path / "c", 2, seed=1)))
    assert sorted(first["train"]["label"]) == ["cooking"] * 2 + ["music"] * 2 + ["sport"] * 2
    assert first["train"]["text"] == again["train"]["text"] != other["train"]["text"]
    assert len(first["test"]) == len(load_from_disk(str(tmp_path / "a" / "k2-seed-0"))["test"]) == 12
    assert curve.parse_shots(["0", "8", "ALL", "8"]) == [0, 8, "all"]
    with pytest.raises(TunesuiteError, match="--shots eight: give labels per class"):
        curve.parse_shots(["eight"])


def test_compare_shots_gives_the_curve(sentence_bert, small_topics, tmp_path):
    out = tmp_path / "curve"
    result = tunesuite.compare("text-classification", str(sentence_bert), str(small_topics), modes=["frozen"],
                               shots=[0, 2], output_dir=str(out), **FLAGS)
    points = {(p["mode"], p["shots"]): p for p in result["points"]}
    assert set(points) == {("zero-shot", 0), ("few-shot", 2), ("frozen", 2)}
    assert all(p["status"] == "ok" and 0 <= p["mean"] <= 1 for p in points.values()), points
    few = json.loads((out / "shots-2" / "few-shot" / "seed-42" / "all_results.json").read_text())
    assert few["shots_used"] == 6  # every row of the draw: 2 per class
    saved = (out / "shots-2" / "frozen" / "seed-42" / "run_config.yaml").read_text()
    assert "k2-seed-42" in saved  # the trained mode ran on the same draw
    assert (out / "curve.png").stat().st_size > 0 and "| zero-shot |" in (out / "curve.md").read_text()
