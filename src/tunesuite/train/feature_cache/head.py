"""The head as the model runs it: the trainable modules (and parameter-free ones such as dropout) called after
the frozen backbone, found with hooks, so the feature cache works for any family without knowing its layout.

The cached features are the input of the first trainable module the forward calls; the head is the chain of
modules called from there on. The chain is replayed on what was captured and checked against the model's own
logits; where they differ (the model computes between its head modules) the cache is not used.
"""

from __future__ import annotations

import torch
from torch import nn


class Unchained(Exception):
    """The model's head is not a plain chain of modules: the normal path must run."""


def _top_trainable(model: nn.Module) -> dict[str, nn.Module]:
    """The outermost modules whose parameters all train."""
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        params = list(module.parameters())
        if params and all(p.requires_grad for p in params) and not any(name.startswith(f + ".") for f in found):
            found[name] = module
    return found


class HeadChain(nn.Module):
    """features -> logits: the head's modules called in the order the model calls them."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = [model]  # a list: not registered twice (CachedHead registers the model)
        self.trainable = _top_trainable(model)
        if not self.trainable:
            raise Unchained("nothing trains")
        self.order: list[str] | None = None
        self.first_only: bool | None = None  # sequence features: does the head read only the first position?

    def capture(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model on `batch`: (the first trainable module's input, the logits)."""
        model = self.model[0]
        trainable = list(self.trainable)
        calls: list[tuple[str, tuple]] = []
        candidates = {n: m for n, m in model.named_modules() if n in self.trainable or (
            n and not list(m.parameters(recurse=True)) and not list(m.children())
            and not any(n.startswith(t + ".") for t in trainable))}
        handles = [m.register_forward_pre_hook(lambda _m, args, n=n: calls.append((n, args)))
                   for n, m in candidates.items()]
        try:
            logits = model(**batch).logits
        finally:
            for handle in handles:
                handle.remove()
        start = next((i for i, (n, _) in enumerate(calls) if n in self.trainable), None)
        if start is None or len(calls[start][1]) != 1 or not torch.is_tensor(calls[start][1][0]):
            raise Unchained("the head takes no single tensor")
        order = [n for n, _ in calls[start:]]
        if self.order is not None and order != self.order:
            raise Unchained("the head's modules run in a different order per batch")
        self.order, features = order, calls[start][1][0].detach()
        if self.first_only is None:  # BERT's pooler, RoBERTa's head...: keep one position, not the whole sequence
            self.first_only = features.dim() > 2 and _replays(self, features[:, :1], logits)
        return (features[:, :1] if self.first_only else features), logits

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        modules = dict(self.model[0].named_modules())
        x = features
        for name in self.order or ():
            x = modules[name](x)
        return x

    @torch.no_grad()
    def check(self, features: torch.Tensor, logits: torch.Tensor, batch_size: int) -> None:
        """Replayed on the cached features, the chain must give the model's own logits (eval mode)."""
        for i in range(0, len(features), batch_size):
            if not _replays(self, features[i : i + batch_size], logits[i : i + batch_size]):
                raise Unchained("the model computes between its head modules")


class SplitHead(nn.Module):
    """A task's own exact split of its model (ModelSpec.feature_split) where the head does not chain, e.g. audio
    classifiers pool the projector's outputs over frames: features = extract(batch), logits = head(features).
    Checked against the model's logits like a chain (so each batch runs the backbone twice, once)."""

    def __init__(self, model: nn.Module, extract, head):
        super().__init__()
        self.model, self._extract, self._head = [model], extract, head

    def capture(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self._extract(batch).detach(), self.model[0](**batch).logits

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self._head(features)

    check = HeadChain.check


def head_of(model: nn.Module, split) -> nn.Module:
    """The task's split when it has one for this model, else the chain found with hooks."""
    parts = split(model) if split is not None else None
    return SplitHead(model, *parts) if parts is not None else HeadChain(model)


def _replays(chain: HeadChain, features: torch.Tensor, logits: torch.Tensor) -> bool:
    """The chain on `features` gives `logits` (a shape the head cannot take counts as not)."""
    try:
        replayed = chain(features)
    except RuntimeError:
        return False
    return replayed.shape == logits.shape and torch.allclose(replayed.float(), logits.float(), atol=1e-5, rtol=1e-4)


def padded(features: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-batch features, zero-padding sequence lengths (dim 1) to the longest."""
    if any(f.shape[2:] != features[0].shape[2:] for f in features):
        raise Unchained("features differ in shape beyond their length")
    if features[0].dim() > 1:
        longest = max(f.shape[1] for f in features)
        features = [nn.functional.pad(f, (0, 0) * (f.dim() - 2) + (0, longest - f.shape[1])) for f in features]
    return torch.cat(features)
