"""The command answers at once: the tables, --help, --version and argument mistakes import no torch,
transformers, peft or datasets (checked in sys.modules of a fresh process, not timed), and every command names
the nearest flag for a near miss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S

from tunesuite.cli import main
from tunesuite.config import flag_check
from tunesuite.config.suggest import close_flags

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "datasets")
TASK = "text-classification"

# Each argv runs through cli.main in one fresh process; it prints what it exited with and the heavy modules loaded.
PROBE = f"""
import json, sys
from tunesuite.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code)
print(json.dumps([codes, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})]))
"""


def heavy_imports(argvs: list[list[str]], cache: Path) -> tuple[list[int], list[str]]:
    env = {**os.environ, "TUNESUITE_CACHE": str(cache), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    codes, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    return codes, heavy


def test_tables_help_version_and_bad_mode_import_no_torch(tmp_path):
    """modes and families are read from the registry itself: registering the modes and families needs no torch."""
    argvs = [["modes"], ["families"], ["--version"], ["--help"], ["predict", "--help"], ["eval", "--help"],
             ["export", "--help"], ["train", TASK, "--mode", "lorra"], ["predict", "/nowhere", "--bach-size", "2"]]
    codes, heavy = heavy_imports(argvs, tmp_path)
    assert codes == [0, 0, 0, 0, 0, 0, 0, 2, 2]
    assert heavy == []


def test_unknown_flag_answers_before_torch_once_the_flags_are_cached(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUNESUITE_CACHE", str(tmp_path))
    with pytest.raises(SystemExit):  # the first run of a version builds the flag table (this process: cheaply)
        main(["train", TASK, "--epochs", "3"])
    assert "did you mean '--num-train-epochs'?" in capsys.readouterr().err
    codes, heavy = heavy_imports([["train", TASK, "--epochs", "3"], ["estimate", TASK, "--lerning-rate", "1"],
                                  ["compare", TASK, "--budgt", "5m"]], tmp_path)
    assert codes == [2, 2, 2] and heavy == []


@pytest.mark.parametrize(("argv", "message"), [
    (["train", TASK, "--epochs", "3"], "error: unknown flag --epochs (did you mean '--num-train-epochs'?)"),
    (["train", TASK, "--mode=lorra"], "error: --mode: invalid choice: 'lorra' (choose from full, "),
    (["compare", TASK, "--budgt", "5m"], "error: unknown flag --budgt (did you mean '--budget'?)"),
    (["export", "/nowhere", "--mrge", "x"], "error: unknown flag --mrge (did you mean '--merge'?)"),
    (["predict", "/nowhere"], "error: /nowhere holds no run_config.yaml"),
])
def test_near_misses_name_the_flag_meant(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESUITE_CACHE", str(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith(message) and "\n" not in err


def test_mode_choices_follow_the_registry_not_the_cache(tmp_path, monkeypatch):
    """The cached flag table says which flags exist; the modes on offer are always the registry's."""
    monkeypatch.setenv("TUNESUITE_CACHE", str(tmp_path))
    table = flag_check.known_flags(TASK)
    table["--mode"]["choices"] = ["full"]  # a stale cache
    (next(tmp_path.glob("flags-*.json"))).write_text(json.dumps(table))
    flag_check.check_argv(TASK, ["--mode", "lora"])  # no error


@pytest.mark.parametrize(("typed", "meant"), [("epochs", "num_train_epochs"), ("--lr", "learning_rate"),
                                              ("learnig-rate", "learning_rate"), ("--alpha", "lora_alpha"),
                                              ("--zzz", None)])
def test_suggestions(typed, meant):
    known = ["num_train_epochs", "unfreeze_after_epochs", "learning_rate", "lora_alpha", "lora_r", "seed"]
    assert close_flags(typed, known) == ([meant] if meant else [])


def test_eval_checks_the_flags_of_the_runs_task(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUNESUITE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "run_config.yaml").write_text(f"task: {TASK}\nmode: lora\n")
    with pytest.raises(SystemExit) as info:
        main(["eval", str(tmp_path), "--datset", "x"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: unknown flag --datset (did you mean '--dataset'?)"


def test_mode_auto_line_is_shown(monkeypatch, capfd):
    """--mode auto logs its choice before the run sets logging up: the entry sets it up first (else Python's
    last-resort handler drops INFO lines, and the line never showed)."""
    import logging

    from tunesuite import cli
    from tunesuite.choose import auto
    from tunesuite.config import resolve

    logger = logging.getLogger("tunesuite")
    monkeypatch.setattr(logger, "handlers", [])  # as in a fresh process
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "level", logging.NOTSET)

    def chosen(task, values):
        logging.getLogger("tunesuite").info("auto: mode frozen (a test's choice)")
        return values

    monkeypatch.setattr(auto, "resolve_auto", chosen)
    monkeypatch.setattr(resolve, "resolve", lambda task, values, command: values)
    cli.configure(None, {"mode": "auto"}, [])
    assert "tunesuite: auto: mode frozen (a test's choice)" in capfd.readouterr().err
