"""What the modes share: which parameters train, frozen BatchNorm statistics."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads with the model, not with the registry (`tunesuite modes` needs none)
    from torch import nn


def trainable_summary(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """Frozen BatchNorm layers must not update running statistics when the trainer calls .train()."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.train = types.MethodType(lambda self, mode=True: nn.Module.train(self, False), module)
            module.eval()


def freeze_all_but(model: nn.Module, head: list[str], extra_name_parts: tuple[str, ...] = ()) -> None:
    """Only the modules in `head` (and parameters whose names contain one of `extra_name_parts`) train."""
    for name, param in model.named_parameters():
        module_name = name.rsplit(".", 1)[0]
        param.requires_grad = any(module_name == h or module_name.startswith(h + ".") for h in head) or any(
            part in name for part in extra_name_parts
        )
