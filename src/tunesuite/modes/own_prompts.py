"""Our own learnable prompts, for models peft cannot prompt-tune: ViT-like prompt tokens, a pixel border (any
image model) and speech frames, attached by the family's prompt kind and restored with a finished run.

Contract: a builder attaches an nn.Module as `model.prompt` (so every prompt parameter name starts with
"prompt.") and hooks it into the forward pass. The settings go into `model.config.tunesuite_prompt`, so
config.json records them; the prompt weights are saved with the model. `restore` re-attaches and reloads.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunesuite.errors import TunesuiteError
from tunesuite.models import families
from tunesuite.modes import extra_weights

# --- Vision: ViT-like prompt tokens, and a pixel border for any image model ------------------------------------------


class ViTPromptTokens(nn.Module):
    """Visual prompt tuning: learnable tokens right after [CLS]; deep gives every layer fresh tokens at its input.

    Inserted after the position embeddings, so prompts carry no position; the head still reads [CLS].
    """

    def __init__(self, config: Any, num_tokens: int, depth: str):
        super().__init__()
        layers = config.num_hidden_layers if depth == "deep" else 1
        patch_inputs = config.num_channels * config.patch_size**2
        bound = math.sqrt(6.0 / (patch_inputs + config.hidden_size))  # Xavier-uniform, as for a patch projection
        self.tokens = nn.Parameter(torch.empty(layers, num_tokens, config.hidden_size).uniform_(-bound, bound))

    def _tokens(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        return self.tokens[layer].to(like.dtype).expand(like.shape[0], -1, -1)

    def insert(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return torch.cat([output[:, :1], self._tokens(0, output), output[:, 1:]], dim=1)

    def replacer(self, layer: int) -> Callable:
        def replace(module: nn.Module, args: tuple) -> tuple:
            hidden, n = args[0], self.tokens.shape[1]
            return (torch.cat([hidden[:, :1], self._tokens(layer, hidden), hidden[:, 1 + n :]], dim=1), *args[1:])

        return replace


def vit_prompt(model: nn.Module, settings: dict[str, Any]) -> nn.Module:
    if settings["num_virtual_tokens"] < 1:
        raise TunesuiteError("--num-virtual-tokens must be at least 1 for ViT prompts")
    backbone = model.base_model
    model.prompt = ViTPromptTokens(model.config, settings["num_virtual_tokens"], settings["depth"])
    backbone.embeddings.register_forward_hook(model.prompt.insert)
    layers = backbone.layers if hasattr(backbone, "layers") else backbone.encoder.layer
    for i in range(1, model.prompt.tokens.shape[0]):
        layers[i].register_forward_pre_hook(model.prompt.replacer(i))
    return model


class PixelBorder(nn.Module):
    """A learnable frame `pad` pixels wide added to the normalised image (the centre stays as it is).

    Starts at zero, so training begins from the frozen model's own predictions.
    """

    def __init__(self, channels: int, height: int, width: int, pad: int):
        super().__init__()
        if not 0 < 2 * pad < min(height, width):
            raise TunesuiteError(f"--prompt-pad {pad}: must be at least 1 and leave a centre in {height}x{width} "
                                 "images")
        self.size, self.pad = (height, width), pad
        self.top = nn.Parameter(torch.zeros(1, channels, pad, width))
        self.bottom = nn.Parameter(torch.zeros(1, channels, pad, width))
        self.left = nn.Parameter(torch.zeros(1, channels, height - 2 * pad, pad))
        self.right = nn.Parameter(torch.zeros(1, channels, height - 2 * pad, pad))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if tuple(pixels.shape[-2:]) != self.size:
            raise TunesuiteError(f"pixel border prompt was trained for {self.size} images, got "
                                 f"{tuple(pixels.shape[-2:])}; use the run's saved image processor")
        centre = self.left.new_zeros(1, self.left.shape[1], self.size[0] - 2 * self.pad, self.size[1] - 2 * self.pad)
        frame = torch.cat([self.top, torch.cat([self.left, centre, self.right], dim=3), self.bottom], dim=2)
        return pixels + frame.to(pixels.dtype)


    def hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (self(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "pixel_values": self(kwargs["pixel_values"])}


def pixel_prompt(model: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """Any image model: the border acts on the backbone's pixel_values, whatever the architecture."""
    height, width = settings["image_size"]
    model.prompt = PixelBorder(getattr(model.config, "num_channels", 3), height, width, settings["pad"])
    model.base_model.register_forward_pre_hook(model.prompt.hook, with_kwargs=True)
    return model


# --- Speech: learnable frames ahead of the audio (wav2vec2 family) ----------------------------------------------


class SpeechPromptFrames(nn.Module):
    """Learnable frames put ahead of the audio at the encoder's input (after the feature projection), where
    attention sees them like real frames; the encoder's output drops them again, so the CTC head still emits
    exactly one output per audio frame. They start small: training begins close to the frozen model."""

    def __init__(self, num_frames: int, hidden_size: int, std: float):
        super().__init__()
        self.frames = nn.Parameter(torch.randn(num_frames, hidden_size) * std)

    def prepend(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        frames = self.frames.to(hidden.dtype).expand(hidden.shape[0], -1, -1)
        mask = kwargs.get("attention_mask")
        if mask is not None:  # the frame-level mask of the audio: prompt frames are always attended to
            kwargs["attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], self.frames.shape[0]), mask], dim=1)
        return (torch.cat([frames, hidden], dim=1), *args[1:]), kwargs

    def drop(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        output["last_hidden_state"] = output["last_hidden_state"][:, self.frames.shape[0] :]
        return output


def speech_prompt(model: nn.Module, settings: dict[str, Any]) -> nn.Module:
    if settings["num_virtual_tokens"] < 1:
        raise TunesuiteError("--num-virtual-tokens must be at least 1 for speech prompts")
    if settings.get("depth", "shallow") != "shallow":
        raise TunesuiteError(f"--prompt-depth {settings['depth']}: speech prompt frames sit at the encoder's input "
                             "only; use --prompt-depth shallow")
    config = model.config
    model.prompt = SpeechPromptFrames(settings["num_virtual_tokens"], config.hidden_size, config.initializer_range)
    encoder = model.base_model.encoder
    encoder.register_forward_pre_hook(model.prompt.prepend, with_kwargs=True)
    encoder.register_forward_hook(model.prompt.drop, with_kwargs=True)
    return model


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


def prompt_weights_expected(auto_model: Any, path: str | Path) -> contextlib.AbstractContextManager[None]:
    """While loading a checkpoint saved with our prompts: its `prompt.*` weights are expected (restore loads them)."""
    return extra_weights.expected(auto_model, path, CONFIG_KEY, r"^prompt\.")


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


# The built-in kinds (py): ViT-like prompt tokens, a pixel border for any image model, speech frames.
register_prompt("tokens")(vit_prompt)
register_prompt("pixels")(pixel_prompt)
register_prompt("frames")(speech_prompt)
