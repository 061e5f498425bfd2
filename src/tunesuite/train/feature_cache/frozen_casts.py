"""Frozen weights cast once: under autocast every linear layer casts its fp32 weight to bf16/fp16 on every call, and
autocast keeps those casts only for weights that train. A frozen weight never changes, so its cast copy is made once
and swapped in while the model runs under autocast. The layer then computes what it computed before (autocast's cast
of the weight is exactly `weight.to(dtype)`), without the copy: for Whisper tiny's tied 51,864-word output
projection that is a 20-million-value copy per step, as long as the rest of a cached decoder step.

Only `nn.Linear` layers are swapped (an embedding or a layer norm reads its weight in fp32 under autocast), each
weight and bias its own copy (a weight tied to the input embedding stays fp32 there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class FrozenCasts:
    """The frozen linear weights of `model` (outside `skip`: a part that does not run), each cast once per dtype
    when first asked for, swapped in by `swapped(dtype)`."""

    def __init__(self, model: nn.Module, skip: nn.Module | None = None):
        skipped = set(skip.modules()) if skip is not None else set()
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear) and frozen(m) and m not in skipped]
        self.copies: dict[torch.dtype, list[dict[str, nn.Parameter]]] = {}

    def cast(self, dtype: torch.dtype) -> list[dict[str, nn.Parameter]]:
        if dtype not in self.copies:
            self.copies[dtype] = [{name: nn.Parameter(p.detach().to(dtype), requires_grad=False)
                                   for name, p in layer._parameters.items() if p is not None}
                                  for layer in self.layers]
        return self.copies[dtype]

    @contextlib.contextmanager
    def swapped(self, dtype: torch.dtype) -> Iterator[None]:
        """The cast copies in place of the layers' own parameters (restored on exit, whatever happens)."""
        kept = [dict(layer._parameters) for layer in self.layers]
        try:
            for layer, copies in zip(self.layers, self.cast(dtype), strict=True):
                layer._parameters.update(copies)
            yield
        finally:
            for layer, own in zip(self.layers, kept, strict=True):
                layer._parameters.update(own)


def frozen(layer: nn.Module) -> bool:
    """Whether none of the layer's own parameters trains (and it has any)."""
    own = [p for p in layer._parameters.values() if p is not None]
    return bool(own) and not any(p.requires_grad for p in own)


def autocast_dtype(tensor: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast runs at on `tensor`'s device now; None when autocast is off there."""
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
