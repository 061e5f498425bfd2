"""A run killed with SIGKILL after a checkpoint resumes to the same result as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import HANG_GUARD_S, write_topic_csvs
from safetensors.torch import load_file

import tunesuite
from tunesuite.train.checkpoints import MARKER, latest_complete, resume_path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = {"mode": "lora", "num_train_epochs": 2, "learning_rate": 5e-3, "seed": 11, "disable_tqdm": True,
         "save_strategy": "epoch", "eval_strategy": "epoch", "per_device_train_batch_size": 8}


def argv(model: Path, dataset: Path, out: Path) -> list[str]:
    tokens = ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(out)]
    for key, value in FLAGS.items():
        tokens += ["--" + key.replace("_", "-"), str(value)]
    return tokens


def assert_same_run(resumed: dict, reference: dict, reference_dir: Path, out: Path) -> None:
    """Equal eval/test metrics and bit-identical adapter weights. (train_loss is not compared: after a resume
    the Trainer averages only the steps it ran itself.)"""
    for key in ("eval_loss", "eval_accuracy", "test_loss", "test_accuracy", "epoch"):
        assert resumed[key] == reference[key], key
    first = load_file(reference_dir / "adapter_model.safetensors")
    second = load_file(out / "adapter_model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_sigkill_then_resume_matches_uninterrupted_run(tiny_bert, tmp_path):
    data = write_topic_csvs(tmp_path / "data", n_train=600)
    reference = tunesuite.finetune("text-classification", str(tiny_bert), str(data), output_dir=str(tmp_path / "ref"),
                                   **{k: v for k, v in FLAGS.items() if k != "mode"}, mode="lora")

    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    script = str(ROOT / "tasks/text_classification.py")
    proc = subprocess.Popen([sys.executable, script, *argv(tiny_bert, data, out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + HANG_GUARD_S  # a hang guard only
    while time.time() < deadline and proc.poll() is None and not list(out.glob(f"checkpoint-*/{MARKER}")):
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "all_results.json").exists()
    killed_at = latest_complete(out)
    assert killed_at is not None

    resumed = tunesuite.finetune("text-classification", str(tiny_bert), str(data), output_dir=str(out),
                                 resume_from_checkpoint="auto", **{k: v for k, v in FLAGS.items() if k != "mode"},
                                 mode="lora")
    assert_same_run(resumed, reference, tmp_path / "ref", out)
    assert json.loads((out / "all_results.json").read_text())["epoch"] == 2.0


def test_auto_resume_skips_a_checkpoint_cut_off_mid_write(tmp_path):
    good, torn = tmp_path / "checkpoint-10", tmp_path / "checkpoint-20"
    good.mkdir()
    (good / "trainer_state.json").write_text("{}")
    torn.mkdir()
    (torn / "trainer_state.json").write_text('{"global_st')  # the crash hit while this was written
    assert latest_complete(tmp_path) == good
    assert resume_path("auto", str(tmp_path)) == str(good)
    assert resume_path("auto", str(tmp_path / "fresh")) is None


def test_asr_audio_is_decoded_once_and_a_resume_reuses_it(tiny_w2v, tmp_path, monkeypatch):
    """Decoding, resampling and feature extraction are cached by the datasets library: a second run over the same
    data (a resume, another mode) reads them back instead of decoding any audio again."""
    import soundfile
    from asr_fixtures import write_tone_corpus

    data = write_tone_corpus(tmp_path / "data", {"train": 24, "validation": 4})
    decoded = []
    real_read = soundfile.read  # counted here: patching tunesuite itself would change the cache key
    monkeypatch.setattr(soundfile, "read", lambda *a, **k: decoded.append(1) or real_read(*a, **k))
    flags = {"max_steps": 2, "eval_strategy": "no", "disable_tqdm": True, "per_device_train_batch_size": 4}
    tunesuite.finetune("asr", str(tiny_w2v), str(data), output_dir=str(tmp_path / "a"), save_strategy="steps",
                       save_steps=1, **flags)
    assert len(decoded) == 28
    decoded.clear()
    tunesuite.finetune("asr", str(tiny_w2v), str(data), output_dir=str(tmp_path / "a"), save_strategy="steps",
                       save_steps=1, resume_from_checkpoint="auto", **{**flags, "max_steps": 3})
    assert decoded == []


STEP_FLAGS = {**FLAGS, "save_strategy": "steps", "save_steps": 3, "save_total_limit": 100,
              "train_sampling_strategy": "group_by_length"}


def _finetune(model: Path, data: Path, out: Path, **extra) -> dict:
    flags = {k: v for k, v in STEP_FLAGS.items() if k != "mode"}
    return tunesuite.finetune("text-classification", str(model), str(data), mode="lora", output_dir=str(out),
                              **flags, **extra)


@pytest.fixture(scope="module")
def step_reference(tiny_bert, tmp_path_factory):
    """An uninterrupted run (10 steps an epoch, 2 epochs) that keeps a checkpoint every 3 steps."""
    data = write_topic_csvs(tmp_path_factory.mktemp("steps-data"), n_train=80)
    out = tmp_path_factory.mktemp("steps") / "ref"
    return data, out, _finetune(tiny_bert, data, out)


@pytest.mark.parametrize(("killed_at", "torn"), [
    ("checkpoint-6", None),  # killed mid-epoch 0, right after a --save-steps checkpoint
    ("checkpoint-15", "checkpoint-18"),  # killed mid-epoch 1 while checkpoint-18 was being written
])
def test_resume_from_a_mid_epoch_step_checkpoint_is_exact(tiny_bert, step_reference, tmp_path, killed_at, torn):
    """What a SIGKILL leaves on disk is the checkpoints written so far: copy them from the uninterrupted run,
    resume with `auto`, and the result must be bit-identical (the epoch's sample order must be replayed)."""
    import shutil

    data, ref, reference = step_reference
    out = tmp_path / "killed"
    out.mkdir()
    shutil.copytree(ref / killed_at, out / killed_at)
    if torn:  # cut off mid-write: some files, neither our marker nor trainer_state.json
        shutil.copytree(ref / torn, out / torn)
        (out / torn / MARKER).unlink()
        (out / torn / "trainer_state.json").unlink()
    assert latest_complete(out) == out / killed_at

    resumed = _finetune(tiny_bert, data, out, resume_from_checkpoint="auto")
    assert_same_run(resumed, reference, ref, out)
