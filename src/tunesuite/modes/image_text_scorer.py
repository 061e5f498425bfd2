"""Zero-shot for images: a dual image-text encoder (CLIP-style) scores each image against each class's prompt.

The image task loads such a checkpoint as its vision tower plus a random head; the text tower and both projections
are in the same checkpoint. At set-up the text tower embeds the class prompts once (the unit rows kept as
"scorer.classes"); the scorer keeps the image projection and the learned temperature, so a clip's logits are the
model's own `logits_per_image`: cosine of the projected embeddings times exp(logit_scale). The text tower is not
kept: the classes are fixed once embedded.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KIND = "image-text"


def _features(found: Any) -> torch.Tensor:
    """get_text/image_features' answer: a tensor, or (newer transformers) an output holding it as pooler_output."""
    return found if isinstance(found, torch.Tensor) else found.pooler_output


def dual_encoder(model_path: str) -> nn.Module | None:
    """The checkpoint as its full image-text model, or None when it is not one (no text and image features)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_path)
    if not (hasattr(config, "text_config") and hasattr(config, "vision_config")):
        return None
    full = AutoModel.from_pretrained(model_path)
    return full if hasattr(full, "get_text_features") and hasattr(full, "get_image_features") else None


class ImageTextScorer(nn.Module):
    """(vision tower's pooled output) -> exp(logit_scale) x cosine with each class prompt. Nothing trains."""

    def __init__(self, settings: dict[str, Any], projection: nn.Module):
        super().__init__()
        self.settings = settings
        self.projection = projection.requires_grad_(False)
        self.classes = nn.Parameter(torch.zeros(settings["num_classes"], projection.out_features),
                                    requires_grad=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        embedded = F.normalize(self.projection(pooled).float(), dim=-1)
        return self.settings["scale"] * embedded @ self.classes.float().T


def _scored_forward(self: nn.Module, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                    **kwargs: Any) -> Any:
    """The image classifier's forward with the scorer as its head: the vision tower's pooled output, projected."""
    from transformers.modeling_outputs import ImageClassifierOutput

    logits = self.scorer(self.vision_model(pixel_values=pixel_values).pooler_output)
    loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
    return ImageClassifierOutput(loss=loss, logits=logits)


def scorer_from(full: nn.Module, settings: dict[str, Any]) -> ImageTextScorer:
    """A scorer with the full model's image projection and temperature (the classes come from `set_prompts`)."""
    settings.update({"kind": KIND, "scale": float(full.logit_scale.detach().exp()),
                     "projection_bias": full.visual_projection.bias is not None})
    return ImageTextScorer(settings, full.visual_projection)


def empty(config: Any, settings: dict[str, Any]) -> ImageTextScorer:
    """A scorer shaped for `config`, to load a saved run's projection and classes into."""
    projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim,
                           bias=settings.get("projection_bias", False))
    return ImageTextScorer(settings, projection)


def set_prompts(scorer: ImageTextScorer, full: nn.Module, tokenizer: Any, prompts: list[str]) -> None:
    """The classes: each prompt embedded by the text tower (projected, unit length)."""
    batch = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        embedded = _features(full.get_text_features(input_ids=batch["input_ids"],
                                                    attention_mask=batch["attention_mask"]))
    scorer.classes.copy_(F.normalize(embedded.float(), dim=-1).to(scorer.classes.dtype))
