"""Entry points shared by every task: parse -> fine-tune, with one-line errors for bad input.

Importing this module stays cheap (no torch or transformers): `--help` and `--version` answer at once.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesuite.errors import TunesuiteError, fail
from tunesuite.registry import find_demo
from tunesuite.tasks import get_task, task_key

if TYPE_CHECKING:
    from tunesuite.config.resolve import RunConfig

class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time: never a stream that was swapped and closed since
    (pytest's capture, for one)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logger = logging.getLogger("tunesuite")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s tunesuite: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def version_line() -> str:
    """`tunesuite X.Y.Z (transformers A, peft B, torch C)`, from package metadata (imports none of them)."""
    from tunesuite import __version__

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"tunesuite {__version__} ({', '.join(f'{n} {installed(n)}' for n in ('transformers', 'peft', 'torch'))})"


def parse_args(task: Any, argv: list[str]) -> RunConfig:
    """The RunConfig for `task` from a command line (see config/parse.py)."""
    from tunesuite.config.parse import parse_argv

    return parse_argv(task, argv)


def run_task(task: Any, argv: list[str]) -> dict[str, Any]:
    """Parse and run; raises TunesuiteError on bad input. Returns the metrics and output_dir."""
    return run_config(task, parse_args(task, argv))


def run_config(task: Any, cfg: RunConfig) -> dict[str, Any]:
    """Run one parsed configuration (the command line and the library both end here)."""
    from tunesuite.train.recipe import finetune_config

    setup_logging()
    return finetune_config(task, cfg)


def busy_cores(sample_s: float = 0.5) -> float:
    """How many cores other processes keep busy now: CPU use over a short sample, in cores. The 1-minute load
    average would lag: right after another job ends it still reads about one busy core for a minute or more."""
    import psutil

    return psutil.cpu_percent(interval=sample_s) / 100 * (psutil.cpu_count() or 1)


@contextmanager
def threads_on_idle_cores():
    """Torch on as many threads as cores are idle (cores minus those busy now, at least one), restored after.

    Measured on the text demo (MiniLM LoRA, 2 cores): idle, two threads run an epoch in 46 s against 125 s on one;
    with another job running, one thread wastes no CPU spin-waiting (1.6 CPU-s per step against 2.3 s on two).
    """
    import torch

    threads = torch.get_num_threads()
    idle = max(1, (os.cpu_count() or 1) - round(busy_cores()))
    torch.set_num_threads(min(threads, idle))
    logging.getLogger("tunesuite").info("torch threads: %d (%d cores idle)", torch.get_num_threads(), idle)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def main(task: Any, argv: list[str] | None = None, prog: str | None = None) -> dict[str, Any] | None:
    """Command-line entry for a TaskSpec or task name: no arguments runs the task's offline demo.

    Bad input exits 2 with one `error: ...` line; Ctrl-C exits 130 with one `interrupted: ...` line.
    `--help` and `--version` answer without importing torch (help text is cached per version, see config).
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        if "--version" in argv:
            print(version_line())
            return None
        if "-h" in argv or "--help" in argv:
            from tunesuite.config.help import help_text

            name = task if isinstance(task, str) else task.name
            loader = (lambda: get_task(name)) if isinstance(task, str) else (lambda: task)
            print(help_text(task_key(name), prog or Path(sys.argv[0]).name, loader), end="")
            return None
        task = get_task(task) if isinstance(task, str) else task
        demo = find_demo(task.name) if not argv else None
        if demo is not None:
            setup_logging()
            with threads_on_idle_cores():
                return demo()
        return run_task(task, argv)
    except (TunesuiteError, KeyboardInterrupt) as e:
        fail(e)
    finally:
        shutdown_distributed()
    return None


def shutdown_distributed() -> None:
    """Leave the process group in step, so multi-process runs exit 0 instead of aborting at exit."""
    if "torch.distributed" not in sys.modules:  # never started (and --help need not import torch)
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
