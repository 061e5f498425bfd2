"""The one argv entry: usage generated from COMMANDS, -h/--help and --version answered in one place (cheaply),
each command's --help listing its own flags with the defaults runs really use, and parsing that chooses nothing
(`--mode auto` is resolved by the entry, between parsing and config.resolve)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S

import tunesuite
from tunesuite import cli

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tunesuite"
TASK = "text-classification"
HEAVY = {"torch", "transformers", "peft"}


@pytest.fixture
def help_cache(tmp_path, monkeypatch):
    """A fresh --help cache, at a fixed width (the width is part of its key)."""
    monkeypatch.setenv("TUNESUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "100")
    return tmp_path / "cache"


def printed(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert cli.main(argv) is None
    return capsys.readouterr().out


def test_usage_lists_every_command(capsys):
    text = printed(capsys, ["--help"])
    assert text == cli.usage() == printed(capsys, []) == printed(capsys, ["-h"])
    for name, command in cli.COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)}\b", text, re.MULTILINE), name
        assert f"{name} {command.args}".strip() in text
    assert "--version" in text and all(task in text for task in tunesuite.registry.task_names())


def test_unknown_command_names_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["fly"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: unknown command 'fly'")
    assert all(name in err for name in cli.COMMANDS)


def test_compare_help_lists_its_own_flags_and_the_train_flags(capsys, help_cache):
    text = printed(capsys, ["compare", TASK, "--help"])
    assert text.startswith(f"usage: tunesuite compare {TASK} ")
    ours = text[text.index("compare (the flags below apply to every run):"):text.index("\noptions:")]
    for flag in ("--modes", "--seeds", "--folds", "--budget"):
        assert re.search(rf"^  {flag} ", ours, re.MULTILINE), flag
    for flag in ("--learning-rate", "--lora-r", "--per-device-train-batch-size", "--mode"):
        assert f"  {flag} " in text, flag
    assert "the comparison's folder" in text  # --output-dir: compare's, not one run's


@pytest.mark.parametrize(("argv", "own"), [
    (["train", TASK], [f"usage: tunesuite train {TASK} ", "--text-column", "--lora-r"]),
    (["estimate", TASK], [f"usage: tunesuite estimate {TASK} ", "--max-steps"]),
    (["predict"], ["usage: tunesuite predict", "inputs", "--batch-size"]),
    (["export"], ["usage: tunesuite export", "--merge DEST"]),
    (["push"], ["usage: tunesuite push", "--hub-model-id", "--hub-private", "--push-merged"]),
    (["report"], ["usage: tunesuite report", "--output"]),
    (["eval"], ["usage: tunesuite eval OUT", "tunesuite eval OUT --help"]),
    (["train"], ["usage: tunesuite train TASK", TASK]),
    (["modes"], ["usage: tunesuite modes"]),
])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_each_command_help_shows_its_own(argv, own, flag, capsys, help_cache):
    text = printed(capsys, [*argv, flag])
    assert all(part in text for part in own), text[:600]
    assert "tunesuite COMMAND" not in text  # its own help, not the top-level list


def test_eval_help_lists_the_flags_of_the_runs_task(tmp_path, capsys, help_cache):
    (tmp_path / "run_config.yaml").write_text(f"task: {TASK}\nmode: lora\n")
    text = printed(capsys, ["eval", str(tmp_path), "--help"])
    assert text.startswith("usage: tunesuite eval OUT ") and "--text-column" in text and "--eval-split" in text


@pytest.mark.parametrize("argv", [["--version"], ["train", TASK, "--version"], ["predict", "x", "--version"],
                                  ["compare", TASK, "--model", "m", "--version"]])
def test_version_anywhere(argv, capsys):
    assert printed(capsys, argv).startswith(f"tunesuite {tunesuite.__version__} (transformers ")


def literal_uses(literal: str) -> list[str]:
    """Every `file:function` of the package where `literal` is compared (`"-h" in argv`) or listed in a tuple."""
    found = set()

    def visit(node: ast.AST, path: Path, scope: str) -> None:
        scope = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
        if isinstance(node, (ast.Compare, ast.Tuple)) and any(
                isinstance(child, ast.Constant) and child.value == literal for child in ast.iter_child_nodes(node)):
            found.add(f"{path.relative_to(SRC)}:{scope}")
        for child in ast.iter_child_nodes(node):
            visit(child, path, scope)

    for path in SRC.rglob("*.py"):
        visit(ast.parse(path.read_text()), path, "<module>")
    return sorted(found)


def test_help_and_version_are_answered_in_one_place():
    """-h/--help in one constant (cli.HELP) and --version in one test (cli._answer): no other module looks."""
    for literal, place in (("-h", ["cli.py:<module>"]), ("--help", ["cli.py:<module>"]),
                           ("--version", ["cli.py:_answer"])):
        assert literal_uses(literal) == place, literal
    helps = [w for path in SRC.rglob("*.py") for w in re.findall(r"\bHELP\b", path.read_text()) and [path.name]]
    assert helps == ["cli.py"]


def imports_of(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=HANG_GUARD_S)
    return proc, {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                  if line.startswith("import time:")}


@pytest.mark.parametrize("argv", [["compare", TASK, "--help"], ["estimate", TASK, "-h"], ["predict", "--help"],
                                  ["push", "--version"]])
def test_command_help_is_cheap_once_cached(argv, capsys, help_cache):
    """The first task --help builds and caches the text; after that no command's --help imports torch."""
    first = printed(capsys, argv)
    proc, modules = imports_of(["-m", "tunesuite", *argv], {"TUNESUITE_CACHE": str(help_cache), "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == first and not modules & HEAVY


def test_parsing_imports_nothing_that_chooses_or_trains():
    """config.parse returns typed values, `--mode auto` untouched: importing it loads nothing of choose/ or train/,
    and parsing `--mode auto --time-budget` loads nothing of choose/ (no trial run)."""
    code = ("import json, sys; from tunesuite.config import parse; "
            "imported = sorted(m for m in sys.modules if m.startswith('tunesuite.')); import tunesuite; "
            "values = parse.command_values(tunesuite.TEXT_CLASSIFICATION, ['--model', 'm', '--dataset', 'd', "
            "'--mode', 'auto', '--time-budget', '1m']); "
            "print(json.dumps([values, imported, sorted(m for m in sys.modules if m.startswith('tunesuite.'))]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    values, imported, parsed = json.loads(proc.stdout)
    assert values == {"model": "m", "dataset": "d", "mode": "auto", "time_budget": "1m"}
    assert "tunesuite.config.parse" in imported
    assert not [m for m in imported if m.split(".")[1] in ("choose", "train")], imported
    assert not [m for m in parsed if m.split(".")[1] == "choose"], parsed
    for path in (SRC / "config").rglob("*.py"):  # nor later, inside a function
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.startswith(("tunesuite.choose", "tunesuite.train")) for n in names), path


def test_the_entry_resolves_mode_auto_between_parse_and_resolve(monkeypatch):
    from tunesuite.choose import auto

    seen = []

    def choose(task, values):
        seen.append(dict(values))
        return {**values, "mode": "lora", "auto_choice": "stub"} if values.get("mode") == "auto" else values

    monkeypatch.setattr(auto, "resolve_auto", choose)
    cfg = cli.parse_args(tunesuite.TEXT_CLASSIFICATION, ["--model", "m", "--dataset", "d", "--mode", "auto"])
    assert seen == [{"model": "m", "dataset": "d", "mode": "auto"}]
    assert (cfg.run.mode, cfg.run.auto_choice) == ("lora", "stub")


def help_default(text: str, flag: str) -> str:
    """The `(default: X)` of `flag` in an argparse help text (its help may wrap over lines)."""
    match = re.search(rf"^  --{flag} \S+\n?(.*?)\(default: ([^)]*)\)", text, re.MULTILINE | re.DOTALL)
    assert match and "\n  --" not in match.group(1), flag
    return match.group(2)


@pytest.mark.parametrize("task", ["text-classification", "image-classification", "audio-classification", "asr"])
def test_help_shows_the_defaults_a_run_uses(task, capsys, help_cache):
    """Our and the task's TrainingArguments defaults, not the library's (a text run trains on batches of 16)."""
    text = printed(capsys, ["train", task, "--help"])
    cfg = cli.parse_args(tunesuite.get_task(task), ["--model", "m", "--dataset", "d"])
    for flag in ("per_device_train_batch_size", "per_device_eval_batch_size", "num_train_epochs", "logging_steps",
                 "save_total_limit"):
        assert float(help_default(text, flag.replace("_", "-"))) == getattr(cfg.training, flag), flag
    assert help_default(text, "eval-strategy") == cfg.training.eval_strategy.value
    if task == TASK:
        assert cfg.training.per_device_train_batch_size == 16  # not TrainingArguments' 8
    assert "the mode's own" in text[text.index("  --learning-rate "):][:300]
