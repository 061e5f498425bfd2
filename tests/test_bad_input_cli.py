"""Entry points on bad input: one `error:` line and exit 2; Ctrl-C one `interrupted:` line and exit 130;
--help and --version answer without importing torch, transformers or peft."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S

import tunesuite
from tunesuite import cli, logs, registry
from tunesuite.errors import RunInterrupted, TunesuiteError

ROOT = Path(__file__).resolve().parents[1]
TASK = "text-classification"
BASE = ["--model", "m", "--dataset", "d"]
HEAVY = {"torch", "transformers", "peft"}


def one_error_line(capsys, call, *args) -> str:
    """Run an entry point expecting exit 2 and exactly one stderr line, `error: ...`; that line."""
    with pytest.raises(SystemExit) as info:
        call(*args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    """Config files and run folders, each with one thing wrong."""
    (tmp_path / "list.yaml").write_text("- mode: lora\n")
    (tmp_path / "bad_type.yaml").write_text("mode: lora\nnum_train_epochs: abc\n")
    (tmp_path / "bad_bool.yaml").write_text("do_predict: maybe\n")
    (tmp_path / "nested.yaml").write_text("lora_r: {a: 1}\n")
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "taskless_run").mkdir()
    (tmp_path / "taskless_run/run_config.yaml").write_text("mode: lora\n")
    (tmp_path / "text_run").mkdir()
    (tmp_path / "text_run/run_config.yaml").write_text(f"task: {TASK}\n")
    return {p.stem: str(p) for p in tmp_path.iterdir()} | {"dir": str(tmp_path)}


TRAIN_CASES = [  # (flags after the model and dataset, what the error line says)
    (["--model"], "--model needs a value"),
    (["--text-column"], "--text-column needs one value or more"),
    (["--num-train-epochs", "x"], "--num-train-epochs: invalid float value: 'x'"),
    (["--config", "{list}"], "{list} must hold a mapping of flag: value (it holds a list)"),
    (["--config", "{bad_type}"], "bad value for 'num_train_epochs' in {bad_type}: invalid float value: 'abc'; "
                                 "fix it in the file"),
    (["--config={bad_bool}"], "bad value for 'do_predict' in {bad_bool}"),
    (["--config", "{nested}"], "bad value for 'lora_r' in {nested}: a mapping"),
    (["--config", "{dir}"], "is a folder, not a YAML file"),
    (["--config"], "--config needs a YAML file path"),
    (["--config", "{list}", "--config", "{list}"], "--config is given more than once"),
]


@pytest.mark.parametrize(("flags", "message"), TRAIN_CASES)
def test_train_flags(flags, message, files, capsys):
    argv = [*BASE, *(f.format(**files) for f in flags)]
    assert message.format(**files) in one_error_line(capsys, tunesuite.main, TASK, argv)


CLI_CASES = [  # (tunesuite arguments, what the error line says)
    (["train", "poetry"], "unknown task 'poetry'; choose one of asr, audio-classification, "
                          "automatic-speech-recognition, image-classification, text-classification"),
    (["train", "poetry", "--help"], "unknown task 'poetry'"),
    (["train", "--model", "m"], "train needs a TASK first"),
    (["eval", "{empty_run}"], "{empty_run} holds no run_config.yaml: point to a finished tunesuite output folder"),
    (["eval", "{taskless_run}"], "run_config.yaml names no task"),
    (["eval", "--dataset", "d"], "eval needs the output folder of a finished run first"),
    (["predict", "{empty_run}", "x.txt"], "holds no run_config.yaml"),
    (["predict", "{text_run}", "missing.txt"], "input file missing.txt does not exist"),
    (["predict", "{text_run}"], "predict needs inputs: files, '-' for standard input, or --text \"a sentence\" "
                                 "(see tunesuite predict --help)"),
    (["export", "{text_run}"], "the following arguments are required: --merge"),
    (["fly"], "unknown command 'fly'"),
]


@pytest.mark.parametrize(("argv", "message"), CLI_CASES)
def test_cli_commands(argv, message, files, capsys):
    line = one_error_line(capsys, cli.main, [a.format(**files) for a in argv])
    assert message.format(**files) in line


def test_negative_learning_rate_is_a_value_not_a_flag():
    """-1e-3 reaches the learning-rate check (or the run) instead of argparse's `expected one argument`."""
    try:
        cfg = cli.parse_args(tunesuite.TEXT_CLASSIFICATION, [*BASE, "--learning-rate", "-1e-3"])
    except TunesuiteError as e:
        assert "learning" in str(e) and "needs a value" not in str(e)
    else:
        assert cfg.training.learning_rate == -1e-3


class OtherInterrupted(TunesuiteError):  # a RunInterrupted look-alike from another module: same exit code
    exit_code = 130


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), OtherInterrupted("interrupted: no checkpoint was saved yet"),
                                    RunInterrupted("interrupted: the newest complete checkpoint is runs/x/checkpoint-4;"
                                                   " resume with: tunesuite train ... --resume-from-checkpoint auto")])
@pytest.mark.parametrize("entry", ["task", "cli"])
def test_ctrl_c_is_one_line_and_exit_130(raised, entry, monkeypatch, capsys):
    def stop(*args):
        raise raised

    monkeypatch.setattr(cli, "run_task", stop)
    with pytest.raises(SystemExit) as info:
        tunesuite.main(TASK, BASE) if entry == "task" else cli.main(["train", TASK, *BASE])
    assert info.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted: ")
    if isinstance(raised, TunesuiteError):
        assert err[0] == str(raised)


@pytest.mark.parametrize(("busy", "threads"), [(0.1, 2), (0.9, 1), (1.6, 1), (5.0, 1)])
def test_demo_runs_on_the_idle_cores(monkeypatch, busy, threads):
    import torch

    from tunesuite.demos import threads as demo_threads

    seen = []
    demo_task = types.SimpleNamespace(name="demo-task")
    tunesuite.register_demo("demo-task")(lambda: seen.append(torch.get_num_threads()))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(demo_threads, "busy_cores", lambda: busy)
    torch.set_num_threads(2)
    try:
        tunesuite.main(demo_task, [])
        assert seen == [threads] and torch.get_num_threads() == 2  # as many as cores are idle, restored after
    finally:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        registry.DEMOS.pop("demo-task")


def test_log_handler_writes_to_the_current_stderr(monkeypatch):
    logs.setup_logging()
    log = logging.getLogger("tunesuite")
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log.info("one")
    first.close()  # what pytest does to its capture stream at teardown
    monkeypatch.setattr(sys, "stderr", second)
    log.info("two")
    assert "tunesuite: two" in second.getvalue()


def imports_of(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run python -X importtime ARGV; the process and the top-level packages it imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=HANG_GUARD_S)
    modules = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    return proc, modules


@pytest.mark.parametrize("argv", [["-m", "tunesuite", "--version"], ["-m", "tunesuite", "--help"],
                                  ["tasks/text_classification.py", "--version"], ["tasks/asr.py", "--version"]])
def test_help_and_version_import_no_torch(argv):
    proc, modules = imports_of(argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not modules & HEAVY
    if "--version" in argv:
        assert proc.stdout.startswith(f"tunesuite {tunesuite.__version__} (transformers ")
    else:
        assert "train TASK [flags]" in proc.stdout


def test_task_help_is_served_from_the_cache(tmp_path, monkeypatch):
    """A second `--help` reads the text saved by the first (building it imports transformers.training_args:
    seconds); test_config checks the text itself."""
    from tunesuite.config.help import _help_name

    monkeypatch.setenv("COLUMNS", "100")  # the key includes the width: the same here and in the subprocess
    (tmp_path / _help_name(TASK, "text_classification.py")).write_text("cached help\n")
    proc, modules = imports_of(["tasks/text_classification.py", "--help"],
                               {"TUNESUITE_CACHE": str(tmp_path), "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "cached help\n" and not modules & HEAVY


def test_busy_cores_sees_a_core_spinning_now():
    """A live sample, not the lagging load average: a busy thread counts while it runs, not a minute later."""
    import threading
    import time

    stop = time.monotonic() + 1.5

    def spin() -> None:
        while time.monotonic() < stop:
            pass

    from tunesuite.demos import threads as demo_threads

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        assert demo_threads.busy_cores(0.5) >= 0.6
    finally:
        spinner.join()
