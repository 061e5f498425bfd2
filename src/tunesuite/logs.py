"""tunesuite's log lines: one handler on the `tunesuite` logger, to stderr, quiet on every rank but the first; and
the libraries' logs kept plain (no terminal escape codes off a terminal, no bars for loading weights)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator

ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Library warnings about library calls a user can neither act on nor avoid: peft asks transformers for a renamed
# property on every adapter run; peft's BOFT tries to build a CUDA kernel on machines without CUDA, then falls back
LIBRARY_NOISE = ((FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
                 (UserWarning, r"Failed to load the CUDA extension"))


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
    for category, message in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)


class PlainText(logging.Filter):
    """Drops terminal escape codes (transformers styles its load report) when stderr is no terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not (sys.stderr and sys.stderr.isatty()):
            record.msg = ESCAPES.sub("", record.getMessage())
            record.args = ()
        return True


PLAIN = PlainText()


def plain_library_logs() -> None:
    """Install PlainText on transformers' log handlers (once)."""
    from transformers.utils import logging as hf_logging

    for handler in hf_logging.get_logger().handlers:
        if PLAIN not in handler.filters:
            handler.addFilter(PLAIN)


@contextlib.contextmanager
def quiet_weight_bars() -> Iterator[None]:
    """No transformers bars for loading or writing weights (seconds each, repeated at every save) while a run goes;
    the Trainer's own bars stay. Restored after."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def transformers_errors_only() -> Iterator[None]:
    """transformers logs errors only, restored after: for its notes about what we do on purpose (a load report
    listing a head that a finished run's adapter restores right after; the ASR pipeline's notes on its own
    chunking). Errors still show."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(was)
