"""The encoder cache: an encoder-decoder (Whisper) whose encoder does not train gives the same encoder output for a
clip every epoch, so it is computed once per clip (eval mode, the run's autocast) and the decoder trains on it,
`model(encoder_outputs=..., labels=...)`; evaluation in training generates from the cached outputs too.

It serves frozen mode (any --trainable-layers: they count decoder layers) and LoRA on the decoder only (--lora-layers N,
which counts decoder layers too), and prompt mode, whose Whisper frames join the encoder's output at the decoder's input
(modes/whisper_prompts.py), so they apply after the cache. The full model's modules are the trained ones, so saving and
the final evaluation are the normal ones. Memory: one clip's output is frames x width values (Whisper: 1500 x 384 for
tiny, 2.3 MB in fp32), stored in the precision the run trains in (bf16/fp16: half); the cache is refused (the normal
path runs, the log says why) when it would take more than half the memory free at the start.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from tunesuite.config.resolve import RunConfig
from tunesuite.registry import Prepared
from tunesuite.train.feature_cache.frozen_casts import FrozenCasts, autocast_dtype
from tunesuite.train.feature_cache.head import Unchained
from tunesuite.train.feature_cache.partial import CACHED, CachedRows, fit_length, train_on_cache
from tunesuite.train.trainer import TuneTrainer

log = logging.getLogger("tunesuite")
MEMORY_SHARE = 0.5  # the cache may take at most this share of the memory free when the run starts


def base_of(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_encoder_decoder(model: nn.Module) -> bool:
    """A model whose decoder reads an encoder's output and generates (Whisper; not its audio classifier, which has
    no decoder): the encoder cache's kind of model."""
    base = base_of(model)
    return (bool(getattr(base.config, "is_encoder_decoder", False)) and hasattr(base, "get_encoder")
            and base.can_generate())


def cache_dtype(cfg: RunConfig) -> torch.dtype:
    """What the cached outputs are kept in: the precision the run trains in."""
    args = cfg.training
    return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32


def cache_bytes(model: nn.Module, clips: int, dtype: torch.dtype) -> int:
    """The cache's size: clips x the encoder's output frames x its width (config.max_source_positions, d_model)."""
    config = base_of(model).config
    frames, width = getattr(config, "max_source_positions", 0), getattr(config, "d_model", 0)
    return clips * frames * width * torch.empty(0, dtype=dtype).element_size()


def free_memory() -> int:
    """Bytes of memory available now (Linux's MemAvailable; elsewhere the free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def why_not(model: nn.Module, cfg: RunConfig, prepared: Prepared) -> str | None:
    """None when the encoder's outputs may be cached for this run; otherwise the reason they may not."""
    base = base_of(model)
    training = [n for n, p in base.get_encoder().named_parameters() if p.requires_grad]
    if training:
        return (f"the encoder trains ({len(training)} tensors, e.g. encoder.{training[0]}): its output changes "
                "every step; adapt the decoder only to cache it (--lora-layers N counts decoder layers)")
    if getattr(base.config, "apply_spec_augment", False):
        return "SpecAugment (config apply_spec_augment) masks the encoder's input differently every step"
    clips = len(prepared.train) + (len(prepared.eval) if evaluates(cfg, prepared) else 0)
    dtype = cache_dtype(cfg)
    size, free = cache_bytes(model, clips, dtype), free_memory()
    if size > MEMORY_SHARE * free:
        return (f"the encoder outputs of {clips} clips would take {megabytes(size)} ({str(dtype).split('.')[-1]}), "
                f"more than half the {megabytes(free)} of memory free (--bf16 stores them in half the space)")
    return None


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def evaluates(cfg: RunConfig, prepared: Prepared) -> bool:
    return prepared.eval is not None and cfg.training.eval_strategy.value != "no"


class CachedEncoder(nn.Module):
    """The model with its encoder's output taken from the batch (CACHED): loss through its own forward, and
    `generate` from the cached output (the Trainer's evaluation generates through it).

    Under autocast (a bf16/fp16 run), the forward takes the states as they are cached, in autocast's dtype, and
    the decoder's frozen linear weights cast once (frozen_casts.py): the layers reading them cast both to that dtype
    anyway, so the loss is the same, without a copy of the states and of every frozen weight per step."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model  # registered: the Trainer sees the parameters that train
        self.config = base_of(model).config
        self.frozen = FrozenCasts(model, skip=base_of(model).get_encoder())

    def can_generate(self) -> bool:
        return base_of(self.model).can_generate()

    def cached(self, inputs: dict[str, Any]) -> BaseModelOutput:
        """The batch's cached states, in the weights' dtype (kept in bf16/fp16; autocast casts down again)."""
        dtype = next(self.model.parameters()).dtype
        return BaseModelOutput(last_hidden_state=inputs.pop(CACHED).to(dtype))

    def forward(self, labels: torch.Tensor | None = None, **inputs: Any) -> Any:
        hidden = inputs[CACHED]
        if hidden.dtype != autocast_dtype(hidden):
            return self.model(encoder_outputs=self.cached(inputs), labels=labels, **inputs)
        states = BaseModelOutput(last_hidden_state=inputs.pop(CACHED))
        with self.frozen.swapped(hidden.dtype):
            return self.model(encoder_outputs=states, labels=labels, **inputs)

    def generate(self, **inputs: Any) -> torch.Tensor:
        return self.model.generate(encoder_outputs=self.cached(inputs), **inputs)


def label_rows(labels: torch.Tensor) -> list[torch.Tensor]:
    """A collated batch's labels cut to each row's own length (its trailing -100 padding dropped)."""
    rows = []
    for row in labels:
        kept = (row != -100).nonzero()
        rows.append(row[: int(kept.max()) + 1] if len(kept) else row[:0])
    return rows


def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Cached encoder outputs stacked (padded to the longest), labels padded with -100."""
    longest = max(r[CACHED].shape[0] for r in rows)
    width = max(len(r["labels"]) for r in rows)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        labels[i, : len(r["labels"])] = r["labels"]
    hidden = torch.stack([fit_length(r[CACHED][None], longest)[0] for r in rows])
    return {CACHED: hidden, "labels": labels}


@torch.no_grad()
def cached_split(trainer: TuneTrainer, dataset: Any, dtype: torch.dtype, split: str) -> CachedRows:
    """One eval-mode pass of the encoder over `dataset` (the task's collator, in order), under the run's autocast:
    each row's encoder output and labels. The first batch is checked: the model on the cached output (as stored)
    gives the loss it gives on the input (its first row: the check runs the encoder once more)."""
    model, encoder = trainer.model, base_of(trainer.model).get_encoder()
    loader = trainer.get_eval_dataloader(dataset)
    model.eval()
    hidden: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for i, batch in enumerate(loader):  # collated outside autocast: the feature extractor computes in fp32
        batch = {k: v for k, v in batch.items() if k != "length"}
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if i == 0 and set(inputs) - {"input_features", "input_values", "attention_mask"}:
            raise Unchained(f"the batches carry {', '.join(sorted(inputs))}, not only the encoder's input")
        with trainer.accelerator.autocast():
            out = encoder(**inputs).last_hidden_state
            if i == 0:  # one row: the check runs the encoder again
                check(model, {k: v[:1] for k, v in batch.items()}, out[:1].to(dtype))
        hidden += list(out.to(dtype).cpu())
        labels += [row.cpu() for row in label_rows(batch["labels"])]
    lengths = dataset["length"] if "length" in getattr(dataset, "column_names", ()) else None
    log.debug("encoder cache: %s split, %d clips", split, len(hidden))
    return CachedRows([{"labels": row} for row in labels], hidden, lengths)


def check(model: nn.Module, batch: dict[str, torch.Tensor], hidden: torch.Tensor) -> None:
    """The model's loss on the cached encoder output must be its loss on the input, else Unchained."""
    direct = model(**batch).loss
    replayed = CachedEncoder(model)(labels=batch["labels"], **{CACHED: hidden}).loss
    if direct is None or not torch.allclose(replayed.float(), direct.float(), atol=1e-4, rtol=1e-3):
        raise Unchained("the decoder on the cached encoder output does not give the model's own loss")


def train_decoder(trainer: TuneTrainer, cfg: RunConfig, prepared: Prepared) -> dict[str, float]:
    """The encoder's outputs computed once per clip (train and eval splits), then the parts that train (the
    decoder's) trained on them with the run's TrainingArguments; returns train_* and feature_cache_seconds."""
    dtype = cache_dtype(cfg)
    start = time.perf_counter()
    train = cached_split(trainer, prepared.train, dtype, "train")
    evaluation = cached_split(trainer, prepared.eval, dtype, "eval") if evaluates(cfg, prepared) else None
    seconds = time.perf_counter() - start
    clips = len(train) + len(evaluation or ())
    log.info("encoder cache: the frozen encoder's outputs of %d clips computed once in %.1f s (%s, %s); "
             "training the decoder on them", clips, seconds, str(dtype).split(".")[-1],
             megabytes(cache_bytes(trainer.model, clips, dtype)))
    return train_on_cache(trainer, CachedEncoder(trainer.model), train, evaluation, collate, seconds)
