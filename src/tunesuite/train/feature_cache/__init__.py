"""Frozen mode, fast: compute the frozen backbone's features once, then train only the head on them.

Valid only when the backbone is fully frozen and deterministic (eval mode, no augmentation, no prompts,
no unfrozen top layers); otherwise the normal path runs and the log says why. The features are what the
model itself feeds its head (feature_cache/head.py captures them with hooks, for any family), kept in memory for
the run. The head's modules are shared with the full model, so saving and the final evaluation (through
the full model) are the normal ones.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

__all__ = ["Unchained", "train_head", "why_not"]

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from tunesuite.config.resolve import RunConfig
from tunesuite.registry import MODES, Prepared, Task
from tunesuite.train import extra_metrics, progress, timing
from tunesuite.train.feature_cache import encoder as encoder_cache
from tunesuite.train.feature_cache import partial as partial_cache
from tunesuite.train.feature_cache.head import HeadChain, Unchained, head_of, padded
from tunesuite.train.trainer import classification_loss

log = logging.getLogger("tunesuite")


def why_not(task: Task, cfg: RunConfig, prepared: Prepared, model: nn.Module | None = None) -> str | None:
    """None when features may be cached for this run; otherwise the reason they may not. An encoder-decoder
    `model` (Whisper) caches its encoder's outputs (encoder.py), whatever the task."""
    args = cfg.training
    mode_blocker = MODES[cfg.run.mode].feature_cache(cfg.mode_args)
    seq2seq = model is not None and encoder_cache.is_encoder_decoder(model)
    checks = [
        (mode_blocker is not None, mode_blocker),
        (model is not None and not seq2seq and prompted(model),
         "soft prompts sit inside the backbone: its features change as they train"),
        (prepared.augmented, "augmentation is on: inputs differ every epoch (--no-augment)"),
        (not task.model.cached_features and not seq2seq, f"the {task.name} task trains on no cached features"),
        (cfg.run.early_stopping_patience is not None, "early stopping keeps checkpoints of the full model"),
        (args.world_size > 1, "multi-process runs use the normal path"),
        (cfg.data.streaming, "--streaming: the training split is a stream, read once per pass"),
        (args.resume_from_checkpoint is not None, "resuming uses the normal path"),
    ]
    reason = next((reason for failed, reason in checks if failed), None)
    return encoder_cache.why_not(model, cfg, prepared) if reason is None and seq2seq else reason


def prompted(model: nn.Module) -> bool:
    """Soft prompts train in this model (ours under `prompt.`, peft's under `prompt_encoder.`)."""
    return any(p.requires_grad and n.startswith(("prompt.", "prompt_encoder.")) for n, p in model.named_parameters())


class _Features(torch.utils.data.Dataset):
    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[i], "labels": self.labels[i]}


class CachedHead(nn.Module):
    """features -> logits (+ the loss the full model would compute)."""

    def __init__(self, model: nn.Module, chain: HeadChain):
        super().__init__()
        self.model, self.chain = model, chain  # model registered so the Trainer sees the head's parameters
        self.config = model.config

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        logits = self.chain(features)
        loss = None if labels is None else classification_loss(logits, labels, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)


@torch.no_grad()
def extract(trainer: Trainer, chain: HeadChain, dataset: Any, split: str = "train") -> _Features:
    """One pass of the frozen model over `dataset` (eval mode), the head's inputs returned in dataset order.

    Rows go through shortest first when lengths are known, so batches carry little padding. Raises Unchained
    when replaying the head on what was captured does not give the model's own logits."""
    order = torch.arange(len(dataset))
    if "length" in dataset.column_names:
        order = torch.tensor(dataset["length"]).argsort(stable=True)
        dataset = dataset.select(order.tolist())
    loader = trainer.get_eval_dataloader(dataset)
    trainer.model.eval()
    features, labels, logits = [], [], []
    quiet = trainer.args.disable_tqdm or not trainer.is_world_process_zero()
    for batch in tqdm(loader, desc=f"extracting {split} features", disable=quiet):
        labels.append(batch.pop("labels").cpu())
        captured, out = chain.capture({k: v for k, v in batch.items() if k != "length"})
        features.append(captured.cpu())
        logits.append(out.float().cpu())
    unsort = order.argsort()
    cached = padded(features)
    chain.check(cached, torch.cat(logits), trainer.args.per_device_eval_batch_size)
    return _Features(cached[unsort], torch.cat(labels)[unsort])


def train_head(trainer: Trainer, task: Task, cfg: RunConfig, prepared: Prepared) -> dict[str, float]:
    """Train the head on cached features with the run's TrainingArguments (the Trainer's); returns train_*.
    When layers of the backbone train too, the frozen ones below them are cached instead (partial.py); an
    encoder-decoder's decoder trains on its frozen encoder's outputs (encoder.py)."""
    if encoder_cache.is_encoder_decoder(trainer.model):
        return whole_run(encoder_cache.train_decoder(trainer, cfg, prepared))
    partial = partial_cache.train_top(trainer, task, cfg, prepared)
    if partial is not None:
        return whole_run(partial)
    model = trainer.model
    chain = head_of(model, task.model.feature_split)
    start = time.perf_counter()
    train = extract(trainer, chain, prepared.train)
    evaluating = prepared.eval is not None and cfg.training.eval_strategy.value != "no"
    evaluation = extract(trainer, chain, prepared.eval, "eval") if evaluating else None  # final eval: full model
    seconds = time.perf_counter() - start
    log.info("feature cache: backbone features of %d examples computed once in %.1f s; training the head only",
             len(train) + (len(evaluation) if evaluation else 0), seconds)
    args = dataclasses.replace(trainer.args, save_strategy="no", load_best_model_at_end=False,
                               train_sampling_strategy="random", remove_unused_columns=False)
    head_trainer = Trainer(model=CachedHead(model, chain), args=args, train_dataset=train, eval_dataset=evaluation,
                           compute_metrics=extra_metrics.with_extra(task, prepared, cfg.run.metric))
    progress.use_our_progress(head_trainer)
    timing.hand_over(trainer, head_trainer)
    result = head_trainer.train()
    trainer.state.log_history = head_trainer.state.log_history  # the run's learning curves (report.html)
    return whole_run({**result.metrics, "feature_cache_seconds": seconds})


def whole_run(metrics: dict[str, float]) -> dict[str, float]:
    """train_runtime and its rates over the whole run (feature pass + training), as an uncached run reports them;
    the training alone in train_cached_runtime."""
    cached, seconds = metrics["train_runtime"], metrics["feature_cache_seconds"]
    whole = cached + seconds
    rates = {k: round(metrics[k] * cached / whole, 3) for k in ("train_samples_per_second", "train_steps_per_second")
             if k in metrics}
    return {**metrics, **rates, "train_runtime": round(whole, 4), "train_cached_runtime": cached}
