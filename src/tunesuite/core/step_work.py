"""How much work each training step does when batches differ in length.

A length-grouped order (text and speech by default) puts the batch with the longest rows first, so the first
steps an estimate times are the slowest of the epoch. Weighing each step by its padded size (rows times the
longest row, per micro-batch) in the sampler's own order lets the estimate scale the timed steps to the epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


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
