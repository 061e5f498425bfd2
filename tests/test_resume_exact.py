"""Exact resume from any checkpoint (epoch-boundary step checkpoints too); a checkpoint of another run is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import write_topic_csvs
from safetensors.torch import load_file

import tunesuite

# 80 training rows, batches of 8: 10 steps an epoch, 2 epochs; a checkpoint every 5 steps, so checkpoint-10 is
# written by --save-steps at the very end of epoch 0, before the epoch's evaluation.
FLAGS = {"num_train_epochs": 2, "learning_rate": 5e-3, "seed": 11, "disable_tqdm": True, "save_strategy": "steps",
         "save_steps": 5, "save_total_limit": 100, "eval_strategy": "epoch", "per_device_train_batch_size": 8}


def _finetune(model: Path, data: Path, out: Path, **extra) -> dict:
    flags = {**FLAGS, "mode": "lora", **extra}
    return tunesuite.finetune("text-classification", str(model), str(data), output_dir=str(out), **flags)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (out / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(out / name)


def assert_same_run(resumed: dict, reference: dict, resumed_dir: Path, reference_dir: Path) -> None:
    """Identical eval/test metrics and bit-identical trained weights (train_loss is not compared: after a resume
    the Trainer averages only the steps it ran itself)."""
    for key in ("eval_loss", "eval_accuracy", "test_loss", "test_accuracy", "epoch"):
        assert resumed[key] == reference[key], key
    first, second = _weights(reference_dir), _weights(resumed_dir)
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(second[key], first[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def reference(tiny_bert, tmp_path_factory):
    """An uninterrupted run that keeps checkpoint-5, -10 (the end of epoch 0), -15 and -20."""
    data = write_topic_csvs(tmp_path_factory.mktemp("exact-data"), n_train=80)
    out = tmp_path_factory.mktemp("exact") / "ref"
    return data, out, _finetune(tiny_bert, data, out)


@pytest.mark.parametrize(("checkpoint", "recorded"), [
    ("checkpoint-10", True),
    ("checkpoint-10", False),  # written by an older tunesuite: --save-strategy steps says when it was written
    ("checkpoint-5", True),
])
def test_resume_from_a_step_checkpoint_is_exact(tiny_bert, reference, tmp_path, checkpoint, recorded):
    """What a kill leaves on disk is the checkpoints written so far: resume from one and the run must end
    bit-identical to the uninterrupted one; checkpoint-10, at the epoch's end, too."""
    data, ref, metrics = reference
    out = tmp_path / "killed"
    out.mkdir()
    shutil.copytree(ref / checkpoint, out / checkpoint)
    if not recorded:
        (out / checkpoint / "tunesuite_checkpoint.json").unlink(missing_ok=True)
    resumed = _finetune(tiny_bert, data, out, resume_from_checkpoint="auto")
    assert_same_run(resumed, metrics, out, ref)


def _resume_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    flags = {**FLAGS, "mode": "lora", "resume_from_checkpoint": "auto"}
    tokens = ["--model", str(model), "--dataset", str(data), "--output-dir", str(out)]
    for key, value in flags.items():
        tokens += ["--" + key.replace("_", "-"), str(value)]
    return [*tokens, *extra]


def _killed_at(reference, tmp_path: Path, checkpoint: str = "checkpoint-5") -> Path:
    out = tmp_path / "killed"
    out.mkdir()
    shutil.copytree(reference[1] / checkpoint, out / checkpoint)
    return out


def _relabelled(data: Path, tmp_path: Path) -> Path:
    """The same rows with the class `sport` renamed `sports`."""
    copy = tmp_path / "relabelled"
    copy.mkdir()
    for csv in data.glob("*.csv"):
        (copy / csv.name).write_text(csv.read_text().replace(",sport\n", ",sports\n"))
    return copy


@pytest.mark.parametrize(("extra", "theirs", "ours"), [
    (["--lora-r", "16"], "--lora-r 8", "--lora-r 16"),
    (["--mode", "full"], "--mode lora", "--mode full"),
    (["--lora-target-modules", "query"], "--lora-target-modules (unset)", "--lora-target-modules query"),
    ("relabelled", "3 labels (cooking, music, sport)", "3 labels (cooking, music, sports)"),
])
def test_a_checkpoint_of_another_run_is_refused_naming_the_difference(tiny_bert, reference, tmp_path, capsys,
                                                                       extra, theirs, ours):
    from conftest import cli_error

    data = reference[0]
    if extra == "relabelled":
        data, extra = _relabelled(data, tmp_path), []
    out = _killed_at(reference, tmp_path)
    line = cli_error(capsys, "text-classification", _resume_argv(tiny_bert, data, out, *extra))
    assert line == (f"error: --resume-from-checkpoint {out / 'checkpoint-5'} was written by a run with {theirs}; "
                    f"this run has {ours}: resume with the same settings (see "
                    f"{out / 'checkpoint-5' / 'tunesuite_checkpoint.json'}) or start fresh")
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-5"]  # refused before training


@pytest.mark.parametrize(("extra", "detail"), [
    (["--lora-r", "16"], "size mismatch"),  # peft's own load fails
    (["--mode", "full"], "Can't find a"),  # an adapter checkpoint for a plain model
])
def test_a_checkpoint_without_a_record_that_does_not_fit_ends_in_one_line(tiny_bert, reference, tmp_path, capsys,
                                                                          log, extra, detail):
    """Written by another tool or an older tunesuite: no record to compare, so it is tried, with a warning; a
    load that fails is still one line."""
    from conftest import cli_error

    out = _killed_at(reference, tmp_path)
    (out / "checkpoint-5" / "tunesuite_checkpoint.json").unlink(missing_ok=True)
    line = cli_error(capsys, "text-classification", _resume_argv(tiny_bert, reference[0], out, *extra))
    assert line.startswith(f"error: --resume-from-checkpoint {out / 'checkpoint-5'}: its weights do not fit "
                           "this run's model (")
    assert detail in line, line
    assert "records no run settings" in log.text


def test_a_plain_checkpoint_that_fits_only_in_part_is_refused(tiny_bert, reference, tmp_path, capsys):
    """transformers loads a model.safetensors with strict=False and only warns: a full-model checkpoint resumed
    by a LoRA run would train on from untouched weights. Refused instead."""
    from conftest import cli_error
    from safetensors.torch import save_file
    from transformers import AutoModelForSequenceClassification

    out = _killed_at(reference, tmp_path)
    folder = out / "checkpoint-5"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tunesuite_checkpoint.json"):
        (folder / name).unlink(missing_ok=True)
    plain = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3)
    save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, folder / "model.safetensors")
    line = cli_error(capsys, "text-classification", _resume_argv(tiny_bert, reference[0], out))
    assert line.startswith(f"error: --resume-from-checkpoint {folder}: its weights do not fit this run's model (")
    assert "weights missing" in line


@pytest.fixture(scope="module")
def unfreeze_reference(tiny_bert, reference, tmp_path_factory):
    """Frozen for one epoch, then every parameter trains at a tenth of the rate (an epoch-end callback)."""
    out = tmp_path_factory.mktemp("unfreeze") / "ref"
    return out, _finetune(tiny_bert, reference[0], out, mode="frozen", unfreeze_after_epochs=1)


@pytest.mark.parametrize("checkpoint", ["checkpoint-10", "checkpoint-15"])
def test_resume_around_the_unfreeze_is_exact(tiny_bert, reference, unfreeze_reference, tmp_path, checkpoint):
    """checkpoint-10 was written before the epoch end that unfreezes; checkpoint-15 after it: the resumed run
    must unfreeze once, at the same step, with the learning rate scaled once."""
    ref, metrics = unfreeze_reference
    out = tmp_path / "killed"
    out.mkdir()
    shutil.copytree(ref / checkpoint, out / checkpoint)
    resumed = _finetune(tiny_bert, reference[0], out, mode="frozen", unfreeze_after_epochs=1,
                        resume_from_checkpoint="auto")
    assert_same_run(resumed, metrics, out, ref)
