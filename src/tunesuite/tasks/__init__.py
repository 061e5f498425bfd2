"""The tasks. Each module builds a registry.Task and registers it; the core never imports them.

Here: finding a task by name (this imports its module on first use); the task of a finished run is
models.run_folder.RunFolder(out).task.
"""

from __future__ import annotations

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

