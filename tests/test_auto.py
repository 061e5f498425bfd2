"""--mode auto: the rule table chooses mode, learning rate and epochs from the data and model sizes, logs the
choice and its reason in one line, and saves it in run_config.yaml and the card."""

from __future__ import annotations

import json

import pytest
import yaml

import tunesuite
from tunesuite.choose import auto
from tunesuite.registry import modes


def test_auto_chooses_logs_and_saves_its_choice(pretrained_bert, topic_data, tmp_path, log):
    out = tmp_path / "run"
    result = tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode="auto",
                                output_dir=str(out), per_device_train_batch_size=16, disable_tqdm=True,
                                save_strategy="no", do_predict=True)
    lines = [r.getMessage() for r in log.records if r.getMessage().startswith("auto: ")]
    assert len(lines) == 1
    # the tiny BERT is small (under 10M parameters), 240 rows in 3 classes: full, 15 steps/epoch -> 20 epochs
    assert lines[0].startswith("auto: mode full, learning rate 0.001, 20 epochs: 240 training examples in 3 classes")
    saved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert saved["mode"] == "full" and saved["learning_rate"] == 1e-3 and saved["num_train_epochs"] == 20
    assert saved["auto_choice"] == lines[0].removeprefix("auto: ")
    assert saved["auto_choice"] in (out / "README.md").read_text()
    # it trained and learned: the accuracy is what its own predictions give, and far above chance (1/3)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    hits = [r["label"] == r["reference"] for r in rows]
    assert hits and result["test_accuracy"] == pytest.approx(sum(hits) / len(hits))
    assert result["test_accuracy"] >= 0.8, result


def test_auto_keeps_what_the_user_set(pretrained_bert, topic_data):
    values = {"model": str(pretrained_bert), "dataset": str(topic_data), "mode": "auto", "learning_rate": 3e-4,
              "max_train_samples": 12}
    chosen = auto.choose(tunesuite.get_task("text-classification"), values)
    assert chosen["mode"] == "frozen" and chosen["learning_rate"] == 3e-4  # 4 examples per class: the head only
    assert "under 10 examples per class" in chosen["auto_choice"]


def test_the_rule_table():
    def mode(examples, classes, params):
        return next(r for r in auto.rules() if r.test(auto.Facts(examples, classes, params))).mode

    assert mode(5000, 4, 22_700_000) == "lora"  # the text demo: MiniLM-L6
    assert mode(100, 5, 200_000) == "full"  # the image demo's small ViT
    assert mode(240, None, 294_000) == "frozen-then-full"  # the speech demo's CTC model: no classes
    assert mode(240, None, 95_000_000) == "lora"
    assert mode(30, 5, 22_700_000) == "frozen"
    assert auto.epochs(100, 16) == 30 and auto.epochs(3000, 32) == 4 and auto.epochs(10**6, 32) == 2


def test_auto_recipe_sets_the_unfreeze_flags():
    facts = auto.Facts(240, None, 21_667)
    flags = auto.settings("frozen-then-full", facts, {"per_device_train_batch_size": 8})
    assert flags["mode"] == "frozen" and flags["num_train_epochs"] == 10 and flags["unfreeze_after_epochs"] == 3
    assert flags["learning_rate"] == modes()["frozen"].learning_rate_for(21_667) > flags["unfreeze_learning_rate"]
    assert flags["learning_rate"] == 2e-2 and flags["unfreeze_learning_rate"] == modes()["full"].learning_rate_for(0)


def test_auto_fits_the_time_budget(pretrained_bert, topic_data):
    values = {"model": str(pretrained_bert), "dataset": str(topic_data), "mode": "auto", "num_train_epochs": 10**5,
              "time_budget": "60s", "disable_tqdm": True, "output_dir": "unused"}
    chosen = auto.choose(tunesuite.get_task("text-classification"), values)
    assert 1 <= chosen["num_train_epochs"] < 10**5 and "fit the 60 s budget" in chosen["auto_choice"]
