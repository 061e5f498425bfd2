"""Learnable prompts for models peft cannot prompt-tune: attaching them by model type, and restoring them.

Contract: a builder attaches an nn.Module as `model.prompt` (so every prompt parameter name starts with
"prompt.") and hooks it into the forward pass. The settings go into `model.config.tunesuite_prompt`, so
config.json records them; the prompt weights are saved with the model. `restore` re-attaches and reloads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import TunesuiteError
from . import prompt_modules

CONFIG_KEY = "tunesuite_prompt"
BUILDERS: dict[str, Callable[[nn.Module, dict[str, Any]], nn.Module]] = {}  # model_type -> builder


def register_prompt(*model_types: str) -> Callable:
    """Decorator: the builder that attaches prompts to models of these model types."""

    def add(fn: Callable) -> Callable:
        for model_type in model_types:
            BUILDERS[model_type] = fn
        return fn

    return add


def attach(model: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """Attach learnable prompts to `model` according to `settings` (num_virtual_tokens, depth, pad...)."""
    model_type = model.config.model_type
    if model_type not in BUILDERS:
        raise TunesuiteError(f"mode prompt: no prompt module for model type {model_type!r} "
                             f"(available: {', '.join(sorted(BUILDERS))})")
    model = BUILDERS[model_type](model, settings)
    setattr(model.config, CONFIG_KEY, dict(settings, model_type=model_type))
    return model


def restore(model: nn.Module, out_dir: str | Path) -> nn.Module:
    """Re-attach the prompts recorded in a saved config and load their trained weights."""
    settings = getattr(model.config, CONFIG_KEY, None)
    if not settings:
        return model
    from safetensors.torch import load_file

    model = attach(model, {k: v for k, v in settings.items() if k != "model_type"})
    weights = {}
    for file in sorted(Path(out_dir).glob("model*.safetensors")):
        weights.update({k[len("prompt."):]: v for k, v in load_file(file).items() if k.startswith("prompt.")})
    missing = set(model.prompt.state_dict()) - set(weights)
    if missing:
        raise TunesuiteError(f"{out_dir}: saved model lacks prompt weights {sorted(missing)[:3]}")
    model.prompt.load_state_dict(weights)
    return model


# The built-in builders (prompt_modules.py): vision, then the wav2vec2 family.
register_prompt("vit")(prompt_modules.vit_prompt)
register_prompt("resnet")(prompt_modules.resnet_prompt)
register_prompt("wav2vec2", "hubert", "wavlm", "data2vec-audio")(prompt_modules.speech_prompt)
