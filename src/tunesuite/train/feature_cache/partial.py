"""The partial feature cache: when only the top layers of the backbone train (frozen --trainable-layers N, LoRA on
the top layers only), the frozen layers below them give the same output every epoch. Their output (the input
of the first layer that trains) is computed once, in eval mode; training then runs the model with its layer
stack cut to the layers that train, that input swapped in from the cache.

The model's own forward runs (masks, the layers that train, the head, the loss), only without the frozen
layers, so any family whose encoder loops over its layer stack works. The first and the last batch of each
split's pass (shortest and longest rows) are checked: the cut model on the cached input must give the full
model's logits, else the normal path runs; the other batches stop at the first layer that trains.

Training the top layers on it: one pass of the frozen lower layers
over each split, then a TuneTrainer over the model cut to the layers that train, the cached inputs in its batches.
The full model's modules are the trained ones, so saving and the final evaluation are the normal ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Any

import torch
from torch import nn

from tunesuite.config.resolve import RunConfig
from tunesuite.models.families import layer_stack
from tunesuite.registry import Prepared, Task
from tunesuite.train import progress, timing
from tunesuite.train.feature_cache.head import Unchained
from tunesuite.train.trainer import TuneTrainer

CACHED = "cached_hidden"  # the batch key of the cached layer input


def first_trainable_layer(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList, int] | None:
    """(parent, attribute, stack, k): the layer stack and the index of its lowest layer that trains; None when
    no layer of the stack trains."""
    found = layer_stack(model)
    if found is None:
        return None
    name, layers = found
    trains = [any(p.requires_grad for p in layer.parameters()) for layer in layers]
    if not any(trains):
        return None
    parent_name, _, attr = name.rpartition(".")
    return dict(model.named_modules())[parent_name], attr, layers, trains.index(True)


class TopLayers(nn.Module):
    """The model with its layer stack cut to layers k.. and their input taken from the batch (CACHED)."""

    def __init__(self, model: nn.Module, parent: nn.Module, attr: str, layers: nn.ModuleList, k: int):
        super().__init__()
        self.model = model  # registered: the Trainer sees the parameters that train
        self.config = model.config
        self._cut = (parent, attr, layers, k)

    @contextlib.contextmanager
    def cut(self, cached: torch.Tensor):
        parent, attr, layers, k = self._cut

        def swap_input(_module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            fitted = fit_length(cached, hidden.shape[1]).to(hidden.dtype)
            return ((fitted, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": fitted})

        handle = layers[k].register_forward_pre_hook(swap_input, with_kwargs=True)
        setattr(parent, attr, nn.ModuleList(list(layers)[k:]))  # the Modules themselves: nothing is copied
        try:
            yield
        finally:
            setattr(parent, attr, layers)
            handle.remove()

    def forward(self, **inputs: Any):
        cached = inputs.pop(CACHED)
        with self.cut(cached):
            return self.model(**inputs)


def fit_length(cached: torch.Tensor, length: int) -> torch.Tensor:
    """Cached inputs padded (zeros) or cut along dim 1 to the batch's length: positions past a row's own length
    are padding, masked by the layers that train."""
    if cached.dim() < 3 or cached.shape[1] == length:
        return cached
    if cached.shape[1] > length:
        return cached[:, :length]
    return nn.functional.pad(cached, (0, 0) * (cached.dim() - 2) + (0, length - cached.shape[1]))


class _Grabbed(Exception):
    """Raised by the hook on layer k once its input is kept: the layers above need not run."""


@torch.no_grad()
def capture(top: TopLayers, batch: dict[str, torch.Tensor], check: bool = True) -> torch.Tensor:
    """The input of layer k for `batch` (eval mode). Checked (`check`): the cut model on it gives the full model's
    logits; unchecked, the forward stops at layer k."""
    _parent, _attr, layers, k = top._cut
    model, seen, order = top.model, {}, []
    trainable = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]

    def grab(_module, args, kwargs):
        seen["input"] = args[0] if args else kwargs["hidden_states"]
        if not check:
            raise _Grabbed

    handles = [layers[k].register_forward_pre_hook(grab, with_kwargs=True)]
    handles += [m.register_forward_pre_hook(lambda m, _a: order.append(m)) for m in trainable]
    try:
        logits = model(**batch).logits
    except _Grabbed:
        logits = None
    finally:
        for handle in handles:
            handle.remove()
    if "input" not in seen or not torch.is_tensor(seen["input"]):
        raise Unchained(f"layer {k} of the stack takes no tensor input")
    if order and order[0] not in set(layers[k].modules()):
        raise Unchained("something below the layers that train trains too (prompts, embeddings, adapters)")
    features = seen["input"].detach()
    if logits is not None:
        replayed = top(**batch, **{CACHED: features}).logits
        if replayed.shape != logits.shape or not torch.allclose(replayed.float(), logits.float(), atol=1e-4,
                                                                rtol=1e-3):
            raise Unchained("the model cut to its top layers does not give its own logits")
    return features


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
    return train_on_cache(trainer, top, train, evaluation, collating(trainer.data_collator), seconds)


def train_on_cache(trainer: TuneTrainer, model: nn.Module, train: Any, evaluation: Any, collate: Any,
                   seconds: float) -> dict[str, float]:
    """Train `model` (the part above the cache) on cached rows with the run's settings, its metrics, progress and
    estimate; the run's Trainer keeps the learning curves. Returns train_* and the cache pass's seconds."""
    args = dataclasses.replace(trainer.args, save_strategy="no", load_best_model_at_end=False,
                               remove_unused_columns=False)  # the rows carry their cached inputs
    inner = TuneTrainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation, data_collator=collate,
                        compute_metrics=trainer.compute_metrics,
                        preprocess_logits_for_metrics=trainer.preprocess_logits_for_metrics)
    progress.use_our_progress(inner)
    timing.hand_over(trainer, inner)
    result = inner.train()
    trainer.state.log_history = inner.state.log_history  # the run's learning curves (report.html)
    return {**result.metrics, "feature_cache_seconds": seconds}
