"""The shared measuring core that every bench script imports (and that imports none of them): a measuring
process's set-up, --flag values, a wall + CPU clock, and the plain-text tables the scripts print.

Keeping these here is what lets run.py drive the parts (measure, partial, precision, report) while the parts never
import run.py or each other.
"""

from __future__ import annotations

import time
from typing import Any


def setup_process(threads: int | None) -> None:
    """Quiet, steady measurement: `threads` torch threads (None or 0: torch's own choice), no progress bars or
    loading reports, tunesuite's log at warnings."""
    import logging

    import datasets
    import transformers

    if threads:
        import torch

        torch.set_num_threads(threads)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("tunesuite").setLevel(logging.WARNING)


def flag_values(flags: list[str]) -> dict[str, str]:
    """--flag KEY=VALUE pairs as run settings (the values as strings: the suite's own parser types them)."""
    return dict(f.split("=", 1) for f in flags)


def clock() -> tuple[float, float]:
    """Wall and CPU seconds now: a side is timed in both, as CPU time is steadier on a shared machine."""
    return time.perf_counter(), time.process_time()


def fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    """A table cell: `value * scale` in `spec`, or "-" when not measured."""
    return "-" if value is None else format(value * scale, spec)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; the first two left-aligned (names), the rest right-aligned (numbers)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if i > 1 else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])
