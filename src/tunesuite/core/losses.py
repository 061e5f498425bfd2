"""The classification loss a run trains with: the model's own, or class-weighted when the run sets weights.

The weights live in the model config (`tunesuite_class_weights`, so config.json records them and a finished
run evaluates with the same loss); the Trainer subclass and the feature-cache head both compute it here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

CLASS_WEIGHTS = "tunesuite_class_weights"


def class_weights(config: Any) -> list[float] | None:
    return getattr(config, CLASS_WEIGHTS, None) or None


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: Any) -> torch.Tensor:
    """Cross-entropy (single label), binary cross-entropy per class (multi-label) or MSE (regression), with the
    config's class weights when it has them."""
    weights = class_weights(config)
    weight = None if weights is None else torch.tensor(weights, dtype=logits.dtype, device=logits.device)
    if config.problem_type == "regression":
        return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    if config.problem_type == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), weight=weight)
    return nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1).long(), weight=weight)
