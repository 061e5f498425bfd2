"""Entry points shared by every task: parse -> fine-tune, with one-line errors for bad input."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from . import config
from .errors import TunesuiteError
from .modes import DEFAULT_LEARNING_RATES

TASKS: dict[str, Any] = {}  # name -> TaskSpec; each task module registers itself


def register_task(spec: Any) -> Any:
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> Any:
    key = name.replace("_", "-")
    if key not in TASKS:
        raise TunesuiteError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[key]


def setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logger = logging.getLogger("tunesuite")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s tunesuite: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def parse_args(task: Any, argv: list[str]) -> config.RunConfig:
    return config.parse(task, argv, DEFAULT_LEARNING_RATES)


def run_task(task: Any, argv: list[str]) -> dict[str, Any]:
    """Parse and run; raises TunesuiteError on bad input. Returns the metrics and output_dir."""
    from .trainer import finetune_config

    setup_logging()
    return finetune_config(task, parse_args(task, argv))


def main(task: Any, argv: list[str] | None = None) -> dict[str, Any] | None:
    """Command-line entry: no arguments runs the task's offline demo; bad input exits 2 with `error: ...`."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv and task.demo is not None:
            setup_logging()
            return task.demo()
        return run_task(task, argv)
    except TunesuiteError as e:
        config.die(str(e))
    finally:
        shutdown_distributed()
    return None


def shutdown_distributed() -> None:
    """Leave the process group in step, so multi-process runs exit 0 instead of aborting at exit."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
