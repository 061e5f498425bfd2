"""How many torch threads a demo runs on: as many as cores are idle now (the demos share a laptop with other work)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager


def busy_cores(sample_s: float = 0.5) -> float:
    """How many cores other processes keep busy now: CPU use over a short sample, in cores. The 1-minute load
    average would lag: right after another job ends it still reads about one busy core for a minute or more."""
    import psutil

    return psutil.cpu_percent(interval=sample_s) / 100 * (psutil.cpu_count() or 1)


@contextmanager
def threads_on_idle_cores() -> Iterator[None]:
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
