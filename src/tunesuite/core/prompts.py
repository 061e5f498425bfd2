"""Learnable prompts for models peft cannot prompt-tune: attaching them by the family's prompt kind, and restoring them.

Contract: a builder attaches an nn.Module as `model.prompt` (so every prompt parameter name starts with
"prompt.") and hooks it into the forward pass. The settings go into `model.config.tunesuite_prompt`, so
config.json records them; the prompt weights are saved with the model. `restore` re-attaches and reloads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import TunesuiteError
from . import families, prompt_modules

CONFIG_KEY = "tunesuite_prompt"
BUILDERS: dict[str, Callable[[nn.Module, dict[str, Any]], nn.Module]] = {}  # prompt kind -> builder


def register_prompt(kind: str) -> Callable:
    """Decorator: the builder of one prompt kind (a Family names its kind)."""

    def add(fn: Callable) -> Callable:
        BUILDERS[kind] = fn
        return fn

    return add


def attach(model: nn.Module, settings: dict[str, Any], modality: str) -> nn.Module:
    """Attach learnable prompts to `model` according to `settings` (num_virtual_tokens, depth, pad...): the kind
    its family names, else the modality's default (families.DEFAULT_PROMPT)."""
    model_type, kind = model.config.model_type, settings.get("kind") or families.prompt_kind(model, modality)
    if kind not in BUILDERS:
        kinds = sorted(families.prompt_families())
        raise TunesuiteError(f"mode prompt: no prompt module for this model type ({model_type}; prompts exist for "
                             f"{', '.join(kinds)}); use --mode lora, bitfit or frozen")
    model = BUILDERS[kind](model, settings)
    setattr(model.config, CONFIG_KEY, dict(settings, model_type=model_type, kind=kind))
    return model


@contextlib.contextmanager
def prompt_weights_expected(auto_model: Any, path: str | Path) -> Iterator[None]:
    """While loading a checkpoint saved with our prompts: its `prompt.*` weights are known (restore loads them), so
    transformers' load report does not list them as UNEXPECTED; any other unexpected key is still reported."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    found = auto_model._model_mapping.get(type(config), None) if getattr(config, CONFIG_KEY, None) else None
    classes = [] if found is None else list(found) if isinstance(found, (tuple, list)) else [found]  # one or several
    before = [cls.__dict__.get("_keys_to_ignore_on_load_unexpected") for cls in classes]
    for cls in classes:
        cls._keys_to_ignore_on_load_unexpected = [*(cls._keys_to_ignore_on_load_unexpected or []), r"^prompt\."]
    try:
        yield
    finally:
        for cls, keys in zip(classes, before, strict=True):
            if keys is None:
                del cls._keys_to_ignore_on_load_unexpected
            else:
                cls._keys_to_ignore_on_load_unexpected = keys


def restore(model: nn.Module, out_dir: str | Path) -> nn.Module:
    """Re-attach the prompts recorded in a saved config and load their trained weights."""
    settings = getattr(model.config, CONFIG_KEY, None)
    if not settings:
        return model
    from safetensors.torch import load_file

    # runs saved before prompt kinds existed: image settings carry image_size (pixel border unless the family says)
    modality = "image" if "image_size" in settings else "speech"
    model = attach(model, {k: v for k, v in settings.items() if k != "model_type"}, modality)
    weights = {}
    for file in sorted(Path(out_dir).glob("model*.safetensors")):
        weights.update({k[len("prompt."):]: v for k, v in load_file(file).items() if k.startswith("prompt.")})
    missing = set(model.prompt.state_dict()) - set(weights)
    if missing:
        raise TunesuiteError(f"{out_dir}: saved model lacks prompt weights {sorted(missing)[:3]}")
    model.prompt.load_state_dict(weights)
    return model


# The built-in kinds (prompt_modules.py): ViT-like prompt tokens, a pixel border for any image model, speech frames.
register_prompt("tokens")(prompt_modules.vit_prompt)
register_prompt("pixels")(prompt_modules.pixel_prompt)
register_prompt("frames")(prompt_modules.speech_prompt)
