"""Training the top layers on the partial feature cache (partial_cache.py): one pass of the frozen lower layers
over each split, then a TuneTrainer over the model cut to the layers that train, the cached inputs in its batches.
The full model's modules are the trained ones, so saving and the final evaluation are the normal ones."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import torch

from ..registry import Prepared, Task
from . import progress
from .config import RunConfig
from .head_chain import Unchained
from .partial_cache import CACHED, TopLayers, capture, first_trainable_layer, fit_length
from .tune_trainer import TuneTrainer

log = logging.getLogger("tunesuite")


class CachedRows(torch.utils.data.Dataset):
    """A split's model inputs, each row with its cached layer input; the stored lengths for length grouping."""

    def __init__(self, inputs: Any, cached: list[torch.Tensor], lengths: list[int] | None):
        self.inputs, self.cached, self.lengths = inputs, cached, lengths
        self.column_names = ["length"] if lengths is not None else []

    def __len__(self) -> int:
        return len(self.cached)

    def __getitem__(self, i):
        if i == "length":  # what TuneTrainer's length-grouped sampler reads
            return self.lengths
        return {**self.inputs[i], CACHED: self.cached[i]}


def collating(collate):
    """The task's collator, with the rows' cached inputs zero-padded to the longest and stacked."""

    def collate_cached(rows: list[dict]) -> dict:
        cached = [row.pop(CACHED) for row in rows]
        batch = collate(rows)
        longest = max(c.shape[0] for c in cached) if cached[0].dim() > 1 else None
        batch[CACHED] = torch.stack([c if longest is None else fit_length(c[None], longest)[0] for c in cached])
        return batch

    return collate_cached


def cached_split(trainer: TuneTrainer, top: TopLayers, dataset: Any) -> CachedRows:
    """One eval-mode pass over `dataset` (shortest rows first: little padding), under the run's autocast, each
    row's layer input kept."""
    order = list(range(len(dataset)))
    lengths = dataset["length"] if "length" in dataset.column_names else None
    if lengths is not None:
        order = sorted(order, key=lengths.__getitem__)
    loader = trainer.get_eval_dataloader(dataset.select(order))
    trainer.model.eval()
    rows: list[torch.Tensor] = []
    last = len(loader) - 1
    with trainer.accelerator.autocast():  # the precision training runs in (bf16: as the uncached run's layers)
        for i, batch in enumerate(loader):  # the shortest and the longest batch checked against the full model
            inputs = {k: v for k, v in batch.items() if k not in ("labels", "length")}
            rows += list(capture(top, inputs, i in (0, last)).cpu())
    cached: list[torch.Tensor] = [torch.empty(0)] * len(dataset)
    for i, row in zip(order, rows, strict=True):
        cached[i] = row
    inputs = trainer._remove_unused_columns(dataset, "cached")
    if "length" in getattr(inputs, "column_names", ()):
        inputs = inputs.remove_columns("length")
    return CachedRows(inputs, cached, lengths)


def train_top(trainer: TuneTrainer, task: Task, cfg: RunConfig, prepared: Prepared) -> dict[str, float] | None:
    """Train the layers that train (and the head) on the cached output of the frozen ones; None when no layer of
    the stack trains (the head-only cache applies) or the lowest one does (nothing to cache)."""
    found = first_trainable_layer(trainer.model)
    if found is None:
        return None
    if found[3] == 0:
        raise Unchained("the lowest layer trains: nothing below it to cache")
    top = TopLayers(trainer.model, *found)
    start = time.perf_counter()
    train = cached_split(trainer, top, prepared.train)
    evaluating = prepared.eval is not None and cfg.training.eval_strategy.value != "no"
    evaluation = cached_split(trainer, top, prepared.eval) if evaluating else None
    seconds = time.perf_counter() - start
    log.info("partial feature cache: the %d frozen layers below layer %d computed once for %d examples in %.1f s; "
             "training layers %d.. and the head", found[3], found[3], len(train) + len(evaluation or ()), seconds,
             found[3])
    args = dataclasses.replace(trainer.args, save_strategy="no", load_best_model_at_end=False,
                               remove_unused_columns=False)  # done above: the rows carry their cached inputs
    top_trainer = TuneTrainer(model=top, args=args, train_dataset=train, eval_dataset=evaluation,
                              data_collator=collating(trainer.data_collator), compute_metrics=trainer.compute_metrics,
                              preprocess_logits_for_metrics=trainer.preprocess_logits_for_metrics)
    progress.use_our_progress(top_trainer)
    result = top_trainer.train()
    trainer.state.log_history = top_trainer.state.log_history  # the run's learning curves (report.html)
    return {**result.metrics, "feature_cache_seconds": seconds}
