"""The output-folder contract: never the --model folder; a folder holding a run is replaced only with
--overwrite-output-dir (which clears the run's own files, never others) or continued with --resume-from-checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import cli_error

import tunesuite
from tunesuite import data
from tunesuite.train import guard


def argv(model, dataset, out, *extra) -> list[str]:
    return ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(out), "--mode", "full",
            "--max-steps", "1", "--eval-strategy", "no", "--save-strategy", "no", "--disable-tqdm", "true", *extra]


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the run gets as far as loading data."""
    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded before the output folder was checked")

    monkeypatch.setattr(data, "load_raw", refuse)


def error(capsys, args: list[str]) -> str:
    return cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, args)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def earlier_run(out: Path, *, finished: bool = True) -> Path:
    """What an earlier lora run leaves: checkpoints, and when it finished its adapter, results and config."""
    (out / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoint-3" / "adapter_model.safetensors").write_bytes(b"old")
    (out / "runs").mkdir()
    if finished:
        for name in ("adapter_model.safetensors", "adapter_config.json", "all_results.json", "README.md"):
            (out / name).write_text("old")
        (out / "run_config.yaml").write_text("task: text-classification\nmode: lora\n")
    return out


@pytest.mark.parametrize("where", ["same", "symlink", "inside", "contains"])
def test_output_dir_never_touches_the_model_folder(capsys, no_loading, tiny_bert, topic_data, tmp_path, where):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    before = snapshot(model)
    if where == "symlink":
        (tmp_path / "link").symlink_to(model)
    out = {"same": model, "symlink": tmp_path / "link", "inside": model / "out", "contains": tmp_path}[where]
    line = error(capsys, argv(model, topic_data, out))
    said = {"same": "is the --model folder", "symlink": "is the --model folder", "inside": "lies inside the --model",
            "contains": "contains the --model folder"}[where]
    assert line.startswith(f"error: --output-dir {out} {said}") and "choose another --output-dir" in line
    assert snapshot(model) == before


def test_a_finished_run_is_refused_without_overwrite(capsys, no_loading, tiny_bert, topic_data, tmp_path):
    out = earlier_run(tmp_path / "out")
    before = snapshot(out)
    line = error(capsys, argv(tiny_bert, topic_data, out))
    assert line == (f"error: --output-dir {out} holds a finished run (all_results.json, run_config.yaml, "
                    "adapter_model.safetensors); pass --overwrite-output-dir to replace it, or choose another "
                    "--output-dir")
    assert snapshot(out) == before


def test_an_unfinished_run_is_continued_only_by_resume(capsys, no_loading, tiny_bert, topic_data, tmp_path):
    out = earlier_run(tmp_path / "out", finished=False)
    line = error(capsys, argv(tiny_bert, topic_data, out))
    assert line == (f"error: --output-dir {out} holds an unfinished run (checkpoint-3); pass --resume-from-checkpoint "
                    "auto to continue it, or --overwrite-output-dir to start over")
    guard.check_output_contents(str(out), overwrite=False, resume="auto")  # resume: allowed
    line = error(capsys, argv(tiny_bert, topic_data, out, "--overwrite-output-dir", "--resume-from-checkpoint",
                              "auto"))
    assert "pass only one of them" in line and (out / "checkpoint-3").is_dir()


@pytest.mark.parametrize("overwrite", [False, True])
def test_files_a_run_does_not_write_are_never_cleared(capsys, no_loading, tiny_bert, topic_data, tmp_path,
                                                      overwrite):
    out = earlier_run(tmp_path / "out")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    line = error(capsys, argv(tiny_bert, topic_data, out, *(["--overwrite-output-dir"] if overwrite else [])))
    assert "holds files a tunesuite run does not write (notes.txt) beside an earlier run" in line
    assert snapshot(out) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.csv").write_text("a,b\n")
    line = error(capsys, argv(tiny_bert, topic_data, tmp_path / "mine"))
    assert line == (f"error: --output-dir {tmp_path / 'mine'} is not empty and holds no tunesuite run (data.csv); "
                    "choose a new or empty --output-dir")


def test_overwrite_replaces_the_earlier_run_entirely(tiny_bert, topic_data, tmp_path, log):
    out = earlier_run(tmp_path / "out")
    (out / ".saving").mkdir()  # a killed run's staging
    (out / ".README.tmp-1.md").write_text("torn")
    tunesuite.main(tunesuite.TEXT_CLASSIFICATION, argv(tiny_bert, topic_data, out, "--overwrite-output-dir"))
    assert "--overwrite-output-dir: removed the earlier run's files" in log.text
    names = {p.name for p in out.iterdir()}
    assert not names & {"adapter_model.safetensors", "adapter_config.json", "checkpoint-3", ".saving",
                        ".README.tmp-1.md"}
    assert {"model.safetensors", "all_results.json", "README.md"} <= names
    assert json.loads((out / "all_results.json").read_text())["trainable_percent"] == 100
    saved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert saved["mode"] == "full" and "overwrite_output_dir" not in saved  # repeating a run never clears unasked
    assert tunesuite.load(out).predict(["goal team match"])


def test_every_file_a_run_writes_is_known_as_the_runs_own(tiny_bert, topic_data, tmp_path):
    """--overwrite-output-dir can only replace a run whose every file it recognises: a run with evaluation,
    calibration and reports on writes nothing outside RUN_FILES, so the same command runs again."""
    out = tmp_path / "out"
    args = ["--model", str(tiny_bert), "--dataset", str(topic_data), "--output-dir", str(out), "--mode", "full",
            "--num-train-epochs", "1", "--calibrate", "--disable-tqdm", "true"]
    tunesuite.main(tunesuite.TEXT_CLASSIFICATION, args)
    unknown = [p.name for p in out.iterdir() if not guard.is_run_file(p.name)]
    assert unknown == []
    tunesuite.main(tunesuite.TEXT_CLASSIFICATION, [*args, "--overwrite-output-dir"])
