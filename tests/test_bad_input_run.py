"""Nothing lost, nothing leaked: bad run settings fail before loading, one run per output folder, a full disk or
Ctrl-C says what was kept and how to resume; each as one `error:` line."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, cli_error

import tunesuite
from tunesuite import data
from tunesuite.train import guard as run_guard
from tunesuite.train.checkpoints import MARKER, is_complete

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "OMP_NUM_THREADS": "1"}


def argv(model, dataset, out, *extra) -> list[str]:
    return ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(out), "--mode", "lora",
            "--max-steps", "2", "--eval-strategy", "no", "--save-strategy", "no", "--disable-tqdm", "true", *extra]


def run_error(capsys, args: list[str]) -> str:
    return cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, args)


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the run gets as far as loading data."""
    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded before the bad setting was reported")

    monkeypatch.setattr(data, "load_raw", refuse)


# (name, how to break the run: tmp_path -> (model override or None, output dir, extra flags), expected text)
EARLY = [
    ("output dir is a file", lambda t: (None, _file(t), []), "is an existing file, not a folder"),
    ("output dir under a file", lambda t: (None, _file(t) / "sub", []), "is a file, so the folder cannot be created"),
    ("model path missing", lambda t: ("./no/such/model", t / "out", []), "model folder ./no/such/model does not exist"),
    ("absolute model path missing", lambda t: (str(t / "nope"), t / "out", []), "model folder {t}/nope does not"),
    ("zero epochs", lambda t: (None, t / "out", ["--max-steps", "-1", "--num-train-epochs", "0"]),
     "--num-train-epochs 0.0: nothing would train"),
    ("zero max steps", lambda t: (None, t / "out", ["--max-steps", "0"]), "--max-steps 0: nothing would train"),
    ("negative learning rate", lambda t: (None, t / "out", ["--learning-rate=-0.001"]),
     "--learning-rate -0.001: must not be negative"),
    ("negative learning rate, spaced", lambda t: (None, t / "out", ["--learning-rate", "-1e-3"]),
     "--learning-rate -0.001: must not be negative"),
]


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(("name", "setup", "expected"), EARLY, ids=[case[0] for case in EARLY])
def test_bad_run_settings_fail_before_loading(capsys, no_loading, tiny_bert, topic_data, tmp_path, name, setup,
                                              expected):
    model, out, extra = setup(tmp_path)
    line = run_error(capsys, argv(model or tiny_bert, topic_data, out, *extra))
    assert expected.format(t=tmp_path) in line
    assert not (tmp_path / "out").exists()


def test_unwritable_output_dir_fails_before_loading(capsys, monkeypatch, no_loading, tiny_bert, topic_data, tmp_path):
    # tests run as root, who may write anywhere: let os.access answer as it would for a normal user
    locked = tmp_path / "read-only"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: Path(p) != locked and real_access(p, mode, **k))
    line = run_error(capsys, argv(tiny_bert, topic_data, locked / "run"))
    assert f"cannot write to {locked}, where it would be created (permission denied)" in line
    line = run_error(capsys, argv(tiny_bert, topic_data, locked))
    assert f"--output-dir {locked}: cannot write to this folder" in line


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_weights_file_is_named(capsys, tiny_bert, topic_data, tmp_path, damage):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    weights = model / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2] if damage == "truncate" else b"not safetensors")
    line = run_error(capsys, argv(model, topic_data, tmp_path / "out"))
    assert f"{weights} is damaged or truncated" in line and "download or save the model again" in line


def _hold_lock(out: Path) -> subprocess.Popen:
    """Another process holding the run lock of `out`, as a running run would."""
    out.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out / run_guard.LOCK_NAME)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_second_run_on_the_same_output_dir_is_refused(capsys, monkeypatch, tiny_bert, topic_data, tmp_path):
    out = tmp_path / "out"
    holder = _hold_lock(out)
    try:
        line = run_error(capsys, argv(tiny_bert, topic_data, out))
        assert f"another run is using --output-dir {out}" in line and "choose another --output-dir" in line
        monkeypatch.setenv("RANK", "1")  # the other processes of a multi-process run share the folder
        with run_guard.RunLock(str(out)):
            pass
        monkeypatch.delenv("RANK")
    finally:
        holder.kill()  # SIGKILL: the OS drops the lock; the stale file must not block the next run
        holder.wait()
    assert (out / run_guard.LOCK_NAME).exists()
    result = tunesuite.finetune("text-classification", str(tiny_bert), str(topic_data), mode="lora",
                                output_dir=str(out), max_steps=1, eval_strategy="no", save_strategy="no",
                                disable_tqdm=True)
    assert result["output_dir"] == str(out)
    assert not (out / run_guard.LOCK_NAME).exists()


def _fail_saving(monkeypatch, where: str, error: Exception) -> None:
    """Let the Trainer's writer run out of space when it writes into a folder named `where`."""
    from transformers import Trainer

    real_save = Trainer._save

    def save(self, output_dir=None, state_dict=None):
        if Path(output_dir).name == where:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "adapter_model.safetensors").write_bytes(b"half")  # what a full disk leaves
            raise error
        return real_save(self, output_dir, state_dict)

    monkeypatch.setattr(Trainer, "_save", save)


def _disk_full_errors() -> list[Exception]:
    from safetensors import SafetensorError

    return [OSError(errno.ENOSPC, "No space left on device"),
            SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")]


@pytest.mark.parametrize("error", _disk_full_errors(), ids=["OSError", "SafetensorError"])
def test_disk_full_at_the_final_save_keeps_checkpoints_and_the_earlier_model(capsys, monkeypatch, tiny_bert,
                                                                             topic_data, tmp_path, error):
    out = tmp_path / "out"
    tunesuite.finetune("text-classification", str(tiny_bert), str(topic_data), mode="lora", output_dir=str(out),
                       max_steps=1, eval_strategy="no", save_strategy="no", disable_tqdm=True)
    earlier = (out / "adapter_model.safetensors").read_bytes()
    _fail_saving(monkeypatch, ".saving", error)
    line = run_error(capsys, argv(tiny_bert, topic_data, out, "--save-strategy", "steps", "--save-steps", "1",
                                  "--resume-from-checkpoint", "auto"))  # the one way to go on in a run's folder
    assert line == (f"error: disk full while saving the final model to {out}: the trained weights up to checkpoint-2 "
                    f"are in {out}/checkpoint-2; free some space and rerun with --resume-from-checkpoint auto")
    assert (out / "adapter_model.safetensors").read_bytes() == earlier
    assert is_complete(out / "checkpoint-2") and not (out / ".saving").exists()


def test_disk_full_at_a_checkpoint_keeps_the_previous_one(capsys, monkeypatch, tiny_bert, topic_data, tmp_path):
    out = tmp_path / "out"
    _fail_saving(monkeypatch, "checkpoint-2", OSError(errno.ENOSPC, "No space left on device"))
    line = run_error(capsys, argv(tiny_bert, topic_data, out, "--max-steps", "3", "--save-strategy", "steps",
                                  "--save-steps", "1"))
    assert line == (f"error: disk full while saving checkpoint-2 to {out}: the trained weights up to checkpoint-1 "
                    f"are in {out}/checkpoint-1; free some space and rerun with --resume-from-checkpoint auto")
    assert is_complete(out / "checkpoint-1") and not (out / "checkpoint-2").exists()


def test_ctrl_c_says_what_was_saved_and_how_to_resume(tiny_bert, topic_data, tmp_path):
    out = tmp_path / "out"
    args = argv(tiny_bert, topic_data, out, "--max-steps", "100000", "--save-strategy", "steps", "--save-steps", "2")
    log = (tmp_path / "stderr.txt").open("w")  # a file, not a pipe: a full pipe would stall the run
    # SIGINT as a terminal delivers it, even where the suite runs in the background (a shell without job control
    # starts it with SIGINT ignored, and an ignored signal stays ignored across exec)
    proc = subprocess.Popen([sys.executable, str(ROOT / "tasks/text_classification.py"), *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=log,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + HANG_GUARD_S  # a hang guard only
    while time.time() < deadline and proc.poll() is None and not list(out.glob(f"checkpoint-*/{MARKER}")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=HANG_GUARD_S)
    log.close()
    err = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: the newest complete checkpoint is ") and f"{out}/checkpoint-" in last
    assert last.endswith(" --resume-from-checkpoint auto") and "tunesuite train text-classification" in last
    assert proc.returncode == 130


def test_relabelled_head_log_names_both_class_lists(monkeypatch, caplog, tmp_path):
    import logging
    from types import SimpleNamespace

    from transformers import BertConfig, BertForSequenceClassification

    from tunesuite.models.pretrained import reset_relabelled_head

    def run(old: list[str], new: list[str]) -> str:
        config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                            intermediate_size=8, id2label=dict(enumerate(old)))
        config.save_pretrained(tmp_path)
        cfg = SimpleNamespace(model=SimpleNamespace(model=str(tmp_path), revision="main", cache_dir=None))
        caplog.clear()
        reset = reset_relabelled_head(BertForSequenceClassification(config), tunesuite.TEXT_CLASSIFICATION, cfg,
                                      dict(enumerate(new)))
        assert reset == ["classifier"]
        return caplog.messages[-1]

    monkeypatch.setattr(logging.getLogger("tunesuite"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="tunesuite"):
        assert run(["1", "3", "5", "7", "9"], list("abcde")).startswith(
            "checkpoint classes (1, 3, 5, 7, 9) differ from the data's (a, b, c, d, e): re-initialised classifier")
        line = run([f"c{i}" for i in range(12)], [f"d{i}" for i in range(12)])
        assert "(c0, c1, c2, c3, ... (12 classes)) differ from the data's (d0, d1, d2, d3, ... (12 classes))" in line


def test_lora_adapter_config_lists_each_trained_module_once(tiny_bert, topic_data, tmp_path):
    import json

    from safetensors.torch import load_file

    out = tmp_path / "out"
    tunesuite.finetune("text-classification", str(tiny_bert), str(topic_data), mode="lora", output_dir=str(out),
                       max_steps=1, eval_strategy="no", save_strategy="no", disable_tqdm=True)
    saved = json.loads((out / "adapter_config.json").read_text())["modules_to_save"]
    assert saved == ["bert.pooler", "classifier"]
    weights = load_file(out / "adapter_model.safetensors")
    assert all(any(f"{name}." in key for key in weights) for name in saved)
    assert tunesuite.load(out).predict(["goal team match"])
