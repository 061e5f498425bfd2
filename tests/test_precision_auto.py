"""--precision auto: bf16 where the hardware runs it natively and the mode keeps accuracy in it on the model's
family, fp32 elsewhere; --bf16 / --fp16 still win; the choice is not saved (it is per machine) and the log's
first lines say it with the other resolved settings (also in run_summary.json, so in report.html)."""

from __future__ import annotations

import json

import pytest

import tunesuite
from tunesuite.cli import parse_args
from tunesuite.config import precision, settings
from tunesuite.errors import TunesuiteError
from tunesuite.registry import modes

TASK = "text-classification"


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU without accelerator that multiplies bf16 natively, and no pin from the environment."""
    monkeypatch.delenv(precision.ENV, raising=False)
    monkeypatch.setattr(precision, "native_bf16", lambda: True)


@pytest.mark.parametrize(("requested", "user", "native", "model_type", "mode", "expect", "why"), [
    ("auto", {}, True, "bert", "lora", "bf16", "natively"),
    ("auto", {}, False, "bert", "lora", "fp32", "no native bf16"),
    ("auto", {}, True, "wav2vec2", "prompt", "fp32", "0.079 WER"),  # speech prompt frames: a mode attribute
    ("auto", {}, True, "bert", "prompt", "bf16", "natively"),
    ("auto", {"bf16": True}, False, "bert", "full", "bf16", "--bf16 asked"),
    ("auto", {"bf16": False}, True, "bert", "full", "fp32", "--bf16 false"),
    ("fp32", {}, True, "bert", "full", "fp32", "--precision fp32"),
    ("bf16", {}, False, "bert", "full", "bf16", "emulated"),
])
def test_decide(requested, user, native, model_type, mode, expect, why, monkeypatch):
    monkeypatch.delenv(precision.ENV, raising=False)
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    chosen = precision.decide(requested, user, modes()[mode], model_type, accelerator=False)
    assert chosen.name == expect and why in chosen.why
    assert chosen.flags == ({"bf16": True, "use_cpu": True} if expect == "bf16" else {})


def test_environment_pin_and_disagreements(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    monkeypatch.setenv(precision.ENV, "fp32")
    assert precision.decide("auto", {}, modes()["lora"], "bert", False).name == "fp32"
    assert precision.decide("bf16", {}, modes()["lora"], "bert", False).name == "bf16"  # the flag beats the pin
    with pytest.raises(TunesuiteError, match="--precision fp16 and --bf16 disagree"):
        precision.decide("fp16", {"bf16": True}, modes()["lora"], "bert", False)
    monkeypatch.setenv(precision.ENV, "half")
    with pytest.raises(TunesuiteError, match="TUNESUITE_PRECISION=half"):
        precision.decide("auto", {}, modes()["lora"], "bert", False)


def test_auto_trains_bf16_on_a_bf16_cpu_without_saving_it(bf16_cpu, tiny_bert, topic_data, tmp_path):
    base = ["--model", str(tiny_bert), "--dataset", str(topic_data), "--output-dir", str(tmp_path)]
    cfg = parse_args(tunesuite.get_task(TASK), [*base, "--mode", "lora", "--seed", "7"])
    assert cfg.training.bf16 and cfg.training.use_cpu
    assert "bf16" not in cfg.saved and cfg.saved["precision"] == "auto"  # --config repeats it as auto elsewhere
    shown = settings.run_settings(cfg)
    assert list(shown) == ["learning rate", "epochs", "effective batch", "mode", "seed", "precision", "attention"]
    assert shown["precision"].startswith("bf16 (auto: this CPU multiplies bf16 natively")
    assert shown["seed"] == "7" and shown["mode"].startswith("lora (lora_r 8, lora_alpha 16")
    assert shown["learning rate"] == f"{modes()['lora'].learning_rate_for(0):g}"
    assert shown["attention"].startswith("eager")
    fp32 = parse_args(tunesuite.get_task(TASK), [*base, "--precision", "fp32"])
    assert not fp32.training.bf16 and settings.run_settings(fp32)["precision"].startswith("fp32 (--precision fp32")


def test_a_run_logs_its_settings_first_and_keeps_them_for_the_report(pretrained_bert, topic_data, tmp_path, log):
    out = tmp_path / "run"
    tunesuite.finetune(TASK, str(pretrained_bert), str(topic_data), mode="frozen", output_dir=str(out),
                       max_steps=2, eval_strategy="no", save_strategy="no", disable_tqdm=True,
                       gradient_accumulation_steps=2, per_device_train_batch_size=4)
    lines = [line for line in log.text.splitlines() if "setting " in line]
    assert len(lines) == 7 and "effective batch:" in lines[2] and "8 (4 per device x 2 accumulation" in lines[2]
    assert "fp32 ($TUNESUITE_PRECISION=fp32 asked)" in log.text  # the suite's pin (conftest)
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["settings"]["epochs"] == "max 2 steps"
    page = (out / "report.html").read_text()
    assert "effective batch" in page and "max 2 steps" in page
