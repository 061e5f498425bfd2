"""The built-in model families (registry.Family), and the facts the modes read from them.

A fact a family leaves empty is found from the module tree (the fallbacks below), and the log says so;
adding a family is one `register_family(Family(...))`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tunesuite.registry import Family, find_family, register_family

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger("tunesuite")

_TEXT = {"bert": ("query", "value"), "roberta": ("query", "value"), "xlm-roberta": ("query", "value"),
         "electra": ("query", "value"), "albert": ("query", "value"),
         "distilbert": ("q_lin", "v_lin"), "deberta-v2": ("query_proj", "value_proj"),
         "modernbert": ("Wqkv",)}
# Poolers that feed only the classifier train with it.
_TEXT_EXTRA = {"bert": {"head": ("bert.pooler",)},
               "albert": {"token_dim": "embedding_size", "head": ("albert.pooler",)},
               "distilbert": {"token_dim": "dim", "head": ("pre_classifier",)}, "deberta-v2": {"head": ("pooler",)}}
for _type, _targets in _TEXT.items():
    register_family(Family(_type, "text", lora_targets=_targets, **_TEXT_EXTRA.get(_type, {})))
# transformers 5 vision transformers name their attention projections q_proj / k_proj / v_proj / o_proj.
for _type in ("vit", "deit", "dinov2"):
    register_family(Family(_type, "image", lora_targets=("q_proj", "v_proj"), prompt="tokens",
                           layer_stack="encoder.layer"))
register_family(Family("swin", "image", lora_targets=("q_proj", "v_proj"), staged=True))
# every ResNet Conv2d: "convolution"; ConvNeXt's pointwise layers (not the depthwise ones), Linear on (N, H, W, C) maps
register_family(Family("resnet", "image", lora_targets=("convolution",), conv_targets=True, staged=True))
register_family(Family("convnext", "image", lora_targets=("pwconv1", "pwconv2"), channels_last=True, staged=True))
for _type in ("wav2vec2", "hubert", "wavlm", "data2vec-audio"):
    register_family(Family(_type, "speech", lora_targets=("q_proj", "v_proj"), prompt="frames"))
# Whisper: frozen keeps the encoder (and the tied embeddings) fixed, --trainable-layers N counts decoder layers; the
# decoder's final norm is its "head" (small, so LoRA's saved copy is too); its prompts: modes/whisper_prompts.py.
register_family(Family("whisper", "speech", lora_targets=("q_proj", "v_proj"), layer_stack="decoder.layers",
                       head=("model.decoder.layer_norm",), prompt="whisper"))
# What a family with no prompt kind of its own gets: peft's prompt methods (text), a pixel border (images).
DEFAULT_PROMPT = {"text": "peft", "image": "pixels"}


def family(model: nn.Module) -> Family:
    return find_family(getattr(model.config, "model_type", "?"))


def _under(name: str, modules: list[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def lora_targets(model: nn.Module, head: list[str]) -> list[str]:
    """The family's LoRA targets; else every nn.Linear outside the head (every Conv2d for a CNN)."""
    from torch import nn  # torch only when a model is at hand: `tunesuite modes` and --help need none

    entry = family(model)
    if entry.lora_targets:
        return list(entry.lora_targets)
    found = {kind: [n for n, m in model.named_modules() if type(m) is kind and not _under(n, head)]
             for kind in (nn.Linear, nn.Conv2d)}
    targets = found[nn.Linear] or found[nn.Conv2d]
    log.info("lora: no LoRA targets listed for model type %r; adapting every %s outside the head (%d modules)",
             entry.model_type, "nn.Linear" if found[nn.Linear] else "nn.Conv2d", len(targets))
    return targets


def lora_refused(model: nn.Module, targets: list[str]) -> list[str]:
    """The modules `targets` name (as peft matches: the full name, or its last parts) that peft's LoRA cannot
    adapt: grouped convolutions (depthwise, MobileNet's and EfficientNet's). peft refuses those unless the rank
    divides by the groups, and can never merge them into the base (--push-merged, export --merge)."""
    from torch import nn

    def named(name: str) -> bool:
        return any(name == t or name.endswith("." + t) for t in targets)

    return [name for name, m in model.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.groups > 1 and named(name)]


def token_dim(model: nn.Module) -> int:
    """The width of the input embeddings, which peft's prompt tokens must match (ALBERT: embedding_size)."""
    entry = family(model)
    if entry.token_dim:
        return int(getattr(model.config, entry.token_dim))
    return int(model.get_input_embeddings().embedding_dim)


def prompt_kind(model: nn.Module, modality: str) -> str | None:
    """The family's prompt kind, else the modality's default (the pixel border suits any image model)."""
    entry = family(model)
    fallback = DEFAULT_PROMPT.get(modality)
    if entry.prompt is None and fallback is not None:
        log.info("prompt: no prompt kind listed for model type %r; using the %r prompt", entry.model_type, fallback)
    return entry.prompt or fallback


def prompt_families() -> list[str]:
    """Model types whose family names a prompt kind."""
    from tunesuite.registry import families

    return [name for name, entry in families().items() if entry.prompt]


def head_modules(model: nn.Module) -> tuple[str, ...]:
    return family(model).head


def layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The backbone's stack of layers / stages: the family's, else the ModuleList holding the most parameters."""
    from torch import nn

    entry, modules = family(model), dict(model.named_modules())
    prefix = getattr(model, "base_model_prefix", "")
    for name in ([f"{prefix}.{entry.layer_stack}", entry.layer_stack] if entry.layer_stack else []):
        if isinstance(modules.get(name), nn.ModuleList):
            return name, modules[name]
    best, best_size = None, 0
    for name, module in modules.items():
        if isinstance(module, nn.ModuleList) and len(module) > 1:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = (name, module), size
    return best


def expose_conv_geometry(model: nn.Module) -> None:
    """peft's wrapper of a convolution (LoRA's, LoHa's, ...) lacks the wrapped layer's stride, padding, ...; modeling
    code that reads them from the module it calls (MobileNet's TF-style padding reads conv.stride) finds the base's."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch import nn

    for module in model.modules():
        base = module.get_base_layer() if isinstance(module, BaseTunerLayer) else None
        if isinstance(base, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                         "padding_mode"):
                if not hasattr(module, name):
                    setattr(module, name, getattr(base, name))
