"""`--metric NAME_OR_PATH`: any `evaluate` metric (a Hub name, or a local metric script folder) scored on the
task's predictions vs references, added to the task's own metrics."""

from __future__ import annotations

import functools
import logging
import numbers
from collections.abc import Callable
from typing import Any

from tunesuite.errors import TunesuiteError
from tunesuite.registry import Prepared, Task

log = logging.getLogger("tunesuite")


@functools.lru_cache(maxsize=8)
def load(names: tuple[str, ...]) -> tuple[Any, ...]:
    """The evaluate modules named (loaded once per process: a run checks them before reading any data)."""
    import evaluate

    modules = []
    for name in names:
        try:
            modules.append(evaluate.load(name, keep_in_memory=True))  # no cache files that processes share
        except Exception as e:  # evaluate raises FileNotFoundError, ConnectionError, ImportError... for a bad name
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TunesuiteError(f"--metric {name}: cannot load this evaluate metric ({reason}); give an evaluate "
                                 "metric name (e.g. accuracy, with network access) or a folder holding its "
                                 "script FOLDER/FOLDER.py") from None
    return tuple(modules)


def check(task: Task, names: list[str] | None) -> None:
    """Fail fast: the metrics load, and the task has predictions to give them."""
    if not names:
        return
    if task.results.metric_inputs is None:
        raise TunesuiteError(f"--metric: the {task.name} task has no predictions vs references to score; "
                             "leave --metric out")
    load(tuple(names))


def with_extra(task: Task, prepared: Prepared, names: list[str] | None) -> Callable[[Any], dict[str, float]]:
    """The task's compute_metrics, plus the `--metric` metrics' numbers (a clashing key gets the metric's name)."""
    compute = task.results.compute_metrics(prepared)
    if not names:
        return compute
    check(task, names)
    modules, inputs = load(tuple(names)), task.results.metric_inputs(prepared)

    def compute_all(eval_pred: Any) -> dict[str, float]:
        out = compute(eval_pred)
        predictions, references = inputs(eval_pred)
        for module in modules:
            for key, value in (module.compute(predictions=predictions, references=references) or {}).items():
                if not isinstance(value, numbers.Number):
                    log.info("--metric %s: %s is not a number, left out of the metrics", module.name, key)
                    continue
                out[f"{module.name}_{key}" if key in out else key] = float(value)
        return out

    return compute_all
