"""`--help` for a task, cached: listing every TrainingArguments flag needs transformers (several CPU-seconds,
it imports torch and peft), so the text is kept in the user's cache, keyed by what it depends on.

The defaults it shows are the ones a run of the task uses (ours and the task's over TrainingArguments' own).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from tunesuite import registry
from tunesuite.config.fields import COMMON_TRAINING_DEFAULTS

PACKAGE = Path(__file__).resolve().parents[1]  # src/tunesuite: any change to its source refreshes the cache


def cache_dir() -> Path:
    """Where tunesuite caches small files: $TUNESUITE_CACHE, else $XDG_CACHE_HOME/tunesuite (~/.cache/tunesuite)."""
    if os.environ.get("TUNESUITE_CACHE"):
        return Path(os.environ["TUNESUITE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunesuite"


def _help_key(task_name: str, prog: str) -> str:
    """What the help text depends on: versions, this package's source, the task, program name, terminal width."""
    digest = hashlib.sha256()
    for part in (metadata.version("transformers"), task_name, prog, str(shutil.get_terminal_size().columns)):
        digest.update(part.encode() + b"\0")
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:24]


def _plugins_registered(task_name: str) -> bool:
    """A task or mode registered from outside this package: its flags are not in the key, so no cache."""
    outside = [m.apply for m in registry.MODES.values()]
    if task_name in registry.TASKS:
        outside.append(registry.TASKS[task_name].data.preprocess)
    return task_name not in registry.BUILTIN_TASKS or any(
        not fn.__module__.startswith("tunesuite.") for fn in outside)


def run_defaults(parser: argparse.ArgumentParser, task: registry.Task) -> None:
    """Show the defaults a run of `task` really gets: TrainingArguments' own (a batch of 8, 3 epochs of ...)
    are replaced by ours and then the task's, as config.resolve merges them; the learning rate is the mode's."""
    ours = {**COMMON_TRAINING_DEFAULTS, "output_dir": f"runs/{task.name}-MODE", **task.training_defaults}
    for action in parser._actions:
        if action.dest in ours:
            action.default = ours[action.dest]
        elif action.dest == "learning_rate":
            action.default = argparse.SUPPRESS
            action.help = f"{action.help or ''} Default: the mode's own (listed under --mode)."


def help_text(task_name: str, prog: str, load_task: Callable[[], registry.Task],
              own_flags: Callable[[argparse.ArgumentParser], None] | None = None) -> str:
    """The `--help` text of a task: from the cache, or built (then cached) by the parser of every flag.
    own_flags adds a command's own flags (compare's) to that parser; `prog` names the command, so it keys them."""
    from tunesuite.config.parse import build_parser

    cacheable = not _plugins_registered(task_name)
    path = cache_dir() / f"help-{_help_key(task_name, prog)}.txt"
    if cacheable and path.is_file():
        return path.read_text()
    task = load_task()
    parser = build_parser(task, prog=prog)
    run_defaults(parser, task)
    if own_flags is not None:
        own_flags(parser)
    text = parser.format_help()
    if cacheable:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(text)
            partial.replace(path)  # atomic: a concurrent --help never reads half a file
        except OSError:
            pass  # a read-only home: no cache, still the help
    return text
