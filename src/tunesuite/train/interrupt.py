"""Ctrl-C during training stops the run between steps, never inside one.

A KeyboardInterrupt raised wherever Python happens to be (half way through an optimizer step, a checkpoint write, a
module import, a library's native call) can leave state no handler cleans up; interpreters have been seen to abort
at exit after one. So while the Trainer's loop runs, the first Ctrl-C only asks it to stop: the run stops at the
next step or evaluation batch boundary (`StopAtBoundary`), and the recipe then says what was saved, as for any
interrupt. A second Ctrl-C stops at once. Runs of several processes keep the plain behaviour: each process would
reach its boundary at a different step and wait on the others for ever.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger("tunesuite")


class StopAtBoundary(TrainerCallback):
    """Raises the asked-for KeyboardInterrupt where the loop is between steps (or evaluation batches)."""

    def __init__(self) -> None:
        self.asked = False

    def _stop_if_asked(self, *_: Any, **__: Any) -> None:
        if self.asked:
            raise KeyboardInterrupt

    on_step_end = on_substep_end = on_prediction_step = _stop_if_asked


@contextlib.contextmanager
def stop_between_steps(trainer: Any, processes: int) -> Iterator[None]:
    """While the block runs `trainer`'s loop, the first SIGINT asks it to stop at a boundary, a second one stops at
    once. Plain SIGINT handling where this is not the main thread, several processes run, or someone else has
    installed a handler (or ignores SIGINT)."""
    if (processes > 1 or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    stopper = StopAtBoundary()

    def ask(_signum: int, _frame: Any) -> None:
        if stopper.asked:
            raise KeyboardInterrupt
        stopper.asked = True
        log.warning("interrupt: stopping after this step (Ctrl-C again to stop at once)")

    trainer.add_callback(stopper)
    signal.signal(signal.SIGINT, ask)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        trainer.remove_callback(stopper)
    if stopper.asked:  # asked after the last boundary (the loop's end, the best model loaded): stop here
        raise KeyboardInterrupt
