"""The tasks. Each module builds a registry.Task and registers it; the core never imports them.

Here: finding a task by name, or the task of a finished run (these import a task module on first use).
"""

from __future__ import annotations

from pathlib import Path

from tunesuite import registry
from tunesuite.errors import TunesuiteError


def task_key(name: str) -> str:
    """The registry key for a task name (`text_classification` -> `text-classification`), checked cheaply."""
    key = name.replace("_", "-")
    if key not in registry.task_names():
        raise TunesuiteError(f"unknown task {name!r}; choose one of {', '.join(registry.task_names())}")
    return key


def get_task(name: str) -> registry.Task:
    task = registry.find_task(task_key(name))
    assert task is not None, f"{registry.BUILTIN_TASKS.get(name)} registered no task {name!r}"
    return task


def all_tasks() -> dict[str, registry.Task]:
    """Every task, the built-in ones loaded."""
    for name in registry.BUILTIN_TASKS:
        registry.find_task(name)
    return registry.TASKS


def saved_task(out_dir: str | Path) -> registry.Task:
    """The task of the finished run in `out_dir`, from its run_config.yaml."""
    import yaml

    out = Path(out_dir)
    path = out / "run_config.yaml"
    if not path.is_file():
        raise TunesuiteError(f"{out} holds no run_config.yaml: point to a finished tunesuite output folder")
    try:
        saved = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise TunesuiteError(f"cannot read {path}: {' '.join(str(e).split())}") from None
    if not isinstance(saved, dict) or not saved.get("task"):
        raise TunesuiteError(f"{path} names no task (a 'task:' line); is it a tunesuite run config?")
    return get_task(str(saved["task"]))
