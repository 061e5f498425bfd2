"""The estimate every run logs after its first timed steps (time per epoch, total, peak memory), the time budget
that stops a run, and what the finished run reports: the estimate, the actual figures and the estimate's error.

The estimate times the run's own first steps (one warm-up step, then TIMED steps) and one evaluation batch, and
extrapolates to the planned steps plus the evaluation passes inside training.

How much work each training step does when batches differ in length.

A length-grouped order (text and speech by default) puts the batch with the longest rows first, so the first
steps an estimate times are the slowest of the epoch. Weighing each step by its padded size (rows times the
longest row, per micro-batch) in the sampler's own order lets the estimate scale the timed steps to the epoch.
"""

from __future__ import annotations

import logging
import math
import re
import resource
import time
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from tunesuite.errors import TunesuiteError


def step_work(trainer: Any) -> list[float] | None:
    """The padded size of each optimizer step of the first epoch, in the order the run trains; None when the
    steps are alike (random order over rows of one size, or an order not drawn by length)."""
    data = trainer.train_dataset
    if data is None or not hasattr(data, "__len__"):
        return None
    state = torch.random.get_rng_state()  # a sampler drawn from the global generator must leave it as it was
    try:
        sampler = trainer._get_train_sampler(data)
    finally:
        torch.random.set_rng_state(state)
    if not isinstance(sampler, LengthGroupedSampler):
        return None
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(0)
    order, lengths = list(sampler), sampler.lengths
    micro = trainer.args.per_device_train_batch_size
    per_step = micro * trainer.args.gradient_accumulation_steps
    work = []
    for start in range(0, len(order), per_step):
        step = order[start:start + per_step]
        batches = [step[k:k + micro] for k in range(0, len(step), micro)]
        work.append(float(sum(len(b) * max(lengths[i] for i in b) for b in batches)))
    return work


def timed_share(work: list[float] | None, first: int, count: int) -> float:
    """How much heavier the timed steps [first, first + count) are than the epoch's average step (1.0: alike)."""
    if not work or len(work) < first + count:
        return 1.0
    timed = sum(work[first:first + count]) / count
    return timed / (sum(work) / len(work))


log = logging.getLogger("tunesuite")
WARMUP, TIMED = 1, 3  # steps: the first is slower (allocation, lazy initialisation); the next TIMED are timed
UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """`90s`, `20m`, `1.5h` or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise TunesuiteError(f"bad duration {text!r}: give a positive number of seconds, or e.g. 90s, 20m, 1.5h")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def reset_peak_memory() -> bool:
    """Start a new peak: Linux resets the process's peak resident size on `5` in clear_refs; the GPU's own.
    True when the process's peak was reset (False: not Linux, the peak stays the one since start)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The process's peak resident size since the last reset, in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def peak_memory_mb() -> float:
    """Peak memory since the last reset, in MiB: GPU allocations on a GPU, else the process's peak RSS."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


def project(step_s: float, start_s: float, steps_left: int, steps_per_epoch: int, eval_passes: int,
            eval_pass_s: float) -> dict[str, float]:
    """Seconds per epoch and for the training loop: the time to the end of the warm-up step, the steps left after
    it at `step_s` each, and each evaluation pass."""
    return {"estimate_epoch_s": step_s * steps_per_epoch + (eval_pass_s if eval_passes else 0.0),
            "estimate_train_s": start_s + step_s * steps_left + eval_pass_s * eval_passes}


def time_eval_pass(trainer: Any) -> float:
    """Seconds for one pass over the eval split: one batch's forward pass, timed, times the number of batches.
    The model goes back to training mode and the random state is restored (the run stays as it would be)."""
    if trainer.eval_dataset is None:
        return 0.0
    loader = trainer.get_eval_dataloader()
    state = torch.random.get_rng_state()
    try:
        batch = trainer._prepare_inputs(next(iter(loader)))
        trainer.model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            trainer.prediction_step(trainer.model, batch, prediction_loss_only=False)
        return (time.perf_counter() - start) * len(loader)
    finally:
        trainer.model.train()
        torch.random.set_rng_state(state)


def eval_passes(args: Any, max_steps: int, epochs: float) -> int:
    """How many evaluation passes the training loop makes."""
    strategy = getattr(args.eval_strategy, "value", args.eval_strategy)
    if strategy == "epoch":
        return math.ceil(epochs)
    if strategy == "steps":
        every = args.eval_steps if args.eval_steps >= 1 else math.ceil(args.eval_steps * max_steps)
        return max_steps // max(int(every or args.logging_steps), 1)
    return 0


class EstimateCallback(TrainerCallback):
    """Times the first steps, logs the estimate, stops at the time budget; `results()` is what the run reports."""

    def __init__(self, time_budget: str | None = None):
        self.budget = parse_duration(time_budget) if time_budget else None
        self.estimate: dict[str, float] = {}
        self.stopped = False
        self.step_s = 0.0
        self.start = self.warm = self.end = 0.0
        self.steps_per_epoch = self.first_step = self.evaluations = self.steps_done = 0
        self.eval_pass_s = 0.0
        self.trainer: Any = None  # set by attach(): the evaluation batch is timed through it

    def on_train_begin(self, args, state, control, **kwargs):
        reset_peak_memory()
        self.start = time.perf_counter()
        self.steps_per_epoch = max(state.max_steps // max(math.ceil(state.num_train_epochs), 1), 1)
        self.first_step = state.global_step  # a resumed run starts later

    def on_step_end(self, args, state, control, **kwargs):
        now, done = time.perf_counter(), state.global_step - self.first_step
        if done == WARMUP:
            self.warm = now
        elif done == WARMUP + TIMED and not self.estimate:
            # an average step: the timed ones scaled by their padded size against the epoch's (length-grouped
            # orders put the longest batch first)
            share = timed_share(step_work(self.trainer), WARMUP, TIMED) if self.trainer is not None else 1.0
            step_s = self.step_s = (now - self.warm) / TIMED / share
            passes = eval_passes(args, state.max_steps, state.num_train_epochs)
            if passes and self.trainer is not None:
                self.eval_pass_s = time_eval_pass(self.trainer)
            steps_left = state.max_steps - self.first_step - WARMUP  # after the warm-up step
            self.estimate = project(step_s, self.warm - self.start, steps_left, self.steps_per_epoch, passes,
                                    self.eval_pass_s)
            self.estimate["estimate_peak_memory_mb"] = peak_memory_mb()
            if state.max_steps > WARMUP + TIMED:  # not a probe that runs only the timed steps
                log.info("estimate: %s", describe(self.estimate, state.max_steps, self.budget))
        if self.budget is not None and now - self.start > self.budget and not self.stopped:
            self.stopped = control.should_training_stop = True
            log.info("time budget %.0f s reached at step %d of %d: stopping training", self.budget,
                     state.global_step, state.max_steps)

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluations += 1

    def on_train_end(self, args, state, control, **kwargs):
        self.end = time.perf_counter()
        self.steps_done = state.global_step - self.first_step

    def results(self) -> dict[str, Any]:
        """The estimate, the actual training time and peak memory, and the estimate's relative error on the
        steps and evaluations that ran (all of them, unless the time budget stopped the run)."""
        if not self.end:
            return {}
        actual = self.end - self.start
        out: dict[str, Any] = {**self.estimate, "actual_train_s": actual, "peak_memory_mb": peak_memory_mb(),
                               "stopped_by_time_budget": self.stopped}
        if self.estimate:
            ran = (self.warm - self.start + self.step_s * (self.steps_done - WARMUP)
                   + self.evaluations * self.eval_pass_s)
            out["estimate_error"] = (ran - actual) / actual
        return out


def describe(estimate: dict[str, float], steps: int, budget: float | None = None) -> str:
    """One line: `~12 s/epoch, ~40 s for 30 steps, peak ~900 MiB` (+ what the budget does to it)."""
    line = (f"~{estimate['estimate_epoch_s']:.0f} s per epoch, ~{estimate['estimate_train_s']:.0f} s for {steps} "
            f"steps and their evaluations, peak memory ~{estimate['estimate_peak_memory_mb']:.0f} MiB on this machine")
    if budget is not None and estimate["estimate_train_s"] > budget:
        line += f"; the {budget:.0f} s time budget stops it at about {100 * budget / estimate['estimate_train_s']:.0f}%"
    return line


def attach(trainer: Any) -> None:
    """Give the trainer's EstimateCallback the trainer (it times an evaluation batch through it)."""
    callback = callback_of(trainer)
    if callback is not None:
        callback.trainer = trainer


def hand_over(outer: Any, inner: Any) -> None:
    """A cached path trains through an inner Trainer: the run's EstimateCallback (its estimate line, its
    --time-budget, the estimate_* results) goes with it, timing the steps that really run."""
    callback = callback_of(outer)
    if callback is not None:
        inner.add_callback(callback)
        callback.trainer = inner


def callback_of(trainer: Any) -> EstimateCallback | None:
    return next((c for c in trainer.callback_handler.callbacks if isinstance(c, EstimateCallback)), None)


def results(trainer: Any) -> dict[str, Any]:
    """What the trainer's EstimateCallback measured (a cached path's inner Trainer reports through it: hand_over)."""
    callback = callback_of(trainer)
    return callback.results() if callback else {}
