"""`--help` for a task, cached: listing every TrainingArguments flag needs transformers (several CPU-seconds,
it imports torch and peft), so the text is kept in the user's cache, keyed by what it depends on."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from tunesuite import registry

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


def help_text(task_name: str, prog: str, load_task: Callable[[], registry.Task]) -> str:
    """The `--help` text of a task: from the cache, or built (then cached) by the parser of every flag."""
    from tunesuite.config.parse import build_parser

    cacheable = not _plugins_registered(task_name)
    path = cache_dir() / f"help-{_help_key(task_name, prog)}.txt"
    if cacheable and path.is_file():
        return path.read_text()
    text = build_parser(load_task(), prog=prog).format_help()
    if cacheable:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(text)
            partial.replace(path)  # atomic: a concurrent --help never reads half a file
        except OSError:
            pass  # a read-only home: no cache, still the help
    return text
