"""A full disk anywhere a run writes: one `error:` line saying what is complete, no temp file left, the final
model complete in OUT or absent (never stranded in OUT/.saving), the torn checkpoint removed.

The disk fills up for one chosen file: opening it (or its temp) for writing leaves a torn file and raises ENOSPC,
and torch's own writer, given that path, does what it does on a full disk (a torn file, a RuntimeError)."""

from __future__ import annotations

import builtins
import errno
import io
from pathlib import Path

import pytest
import torch
from conftest import cli_error

import tunesuite
from tunesuite.files import TEMP_MARK

FULL = "No space left on device"


def _is_target(path, target: str, folder: Path | None) -> bool:
    name, want = Path(path).name, Path(target)
    if folder is not None and Path(path).parent != folder:
        return False
    return name == target or (name.startswith(f".{want.stem}{TEMP_MARK}") and name.endswith(want.suffix)) or \
        name.startswith(f".{target}{TEMP_MARK}")


@pytest.fixture
def disk_full_at(monkeypatch):
    def arm(target: str, folder: Path | None = None) -> None:
        """Fill the disk when `target` (in `folder`, or anywhere) is written."""
        real_open, real_save = builtins.open, torch.save

        def full_open(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, Path)) and any(c in mode for c in "wax") and _is_target(file, target, folder):
                with real_open(file, "wb") as f:
                    f.write(b"half")
                raise OSError(errno.ENOSPC, FULL, str(file))
            return real_open(file, mode, *args, **kwargs)

        def full_save(obj, f, *args, **kwargs):
            if isinstance(f, (str, Path)) and _is_target(f, target, folder):
                with real_open(f, "wb") as file:
                    file.write(b"half")
                raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0: "
                                   "PytorchStreamWriter failed writing file data/0: file write failed")
            return real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", full_open)
        monkeypatch.setattr(io, "open", full_open)
        monkeypatch.setattr(torch, "save", full_save)

    return arm


def run(capsys, model, dataset, out, *extra) -> str:
    args = ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(out), "--mode", "lora",
            "--max-steps", "2", "--eval-strategy", "no", "--save-strategy", "no", "--disable-tqdm", "true", *extra]
    return cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, args)


def assert_clean(out: Path) -> None:
    assert not [p for p in out.rglob(f"*{TEMP_MARK}*")], "a temp file was left behind"
    assert not (out / ".saving").exists(), "the final model was left in the staging folder"


def test_disk_full_at_the_final_models_training_args(capsys, disk_full_at, tiny_bert, topic_data, tmp_path):
    out = tmp_path / "out"
    disk_full_at("training_args.bin")
    line = run(capsys, tiny_bert, topic_data, out)
    assert line == (f"error: disk full while saving the final model to {out}: no complete checkpoint exists, so the "
                    "run must start again; free some space and rerun with --overwrite-output-dir (or choose another "
                    "--output-dir)")
    assert_clean(out)
    assert not any((out / name).exists() for name in ("adapter_model.safetensors", "training_args.bin"))


def test_disk_full_at_a_checkpoints_training_args(capsys, disk_full_at, tiny_bert, topic_data, tmp_path):
    out = tmp_path / "out"
    disk_full_at("training_args.bin")
    line = run(capsys, tiny_bert, topic_data, out, "--save-strategy", "steps", "--save-steps", "1")
    assert line.startswith(f"error: disk full while saving checkpoint-1 to {out}: no complete checkpoint exists")
    assert_clean(out)
    assert not (out / "checkpoint-1").exists()


# README.md: the card in OUT (peft writes one of its own beside the adapter, in the staging folder)
@pytest.mark.parametrize(("target", "writing", "complete"), [
    ("eval_confusion_matrix.png", "the evaluation results", "the final model is"),
    ("all_results.json", "all_results.json", "the final model is"),
    ("README.md", "the model card (README.md)", "the final model, all_results.json and report.html are"),
])
def test_disk_full_after_the_final_model_keeps_it(capsys, disk_full_at, tiny_bert, topic_data, tmp_path, target,
                                                  writing, complete):
    out = tmp_path / "out"
    disk_full_at(target, out)
    line = run(capsys, tiny_bert, topic_data, out)
    assert line == (f"error: disk full while writing {writing} to {out}: {complete} complete there; free some "
                    f"space, then `tunesuite eval {out}` scores the saved model again without training")
    assert_clean(out)
    assert tunesuite.load(out).predict(["goal team match"])  # the final model: complete and loadable
