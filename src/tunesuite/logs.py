"""tunesuite's log lines: one handler on the `tunesuite` logger, to stderr, quiet on every rank but the first."""

from __future__ import annotations

import logging
import os
import sys


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
    """`HH:MM:SS tunesuite: message` lines on stderr: INFO on rank 0, warnings only on the other processes."""
    rank = int(os.environ.get("RANK", "0"))
    logger = logging.getLogger("tunesuite")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s tunesuite: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
