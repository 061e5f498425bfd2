"""Whisper's soft prompts (the family's prompt kind "whisper"): what a prompt is for a model that hears 30 s windows.

Speech recognition (WhisperForConditionalGeneration): N learned vectors appended to the encoder's output, virtual
audio frames that every decoder layer's cross-attention reads beside the 1,500 real ones. They join at the
decoder's input (a pre-hook on the decoder), so training, `generate` (which runs the encoder once) and a forward
given `encoder_outputs` all see them, and the encoder itself stays as it was: frozen and deterministic, its outputs
may be computed once (train/feature_cache/encoder.py) with the prompt applied after the cache, and gradients stop
at the decoder. Cross-attention has no positions, so the frames need none. The alternative, soft tokens in the
decoder's input after the prefix (the continuous form of Whisper's own `<|startofprev|>` text prompt), moves every
label position and has to be threaded through generation's prefix and its key/value cache; it was not taken.

Audio classification (WhisperForAudioClassification, the encoder alone, mean-pooled): frames appended after the
encoder would be a constant after pooling (the projector is affine and the mean linear, so they only add a fixed
vector to the pooled features, which the classifier's bias already is). So the prompt is VPT's: N learned tokens
put ahead of the audio at the encoder's input (after the positions, before layer 0), attended to by every layer,
and dropped at the encoder's output, so the head pools the real frames only, which the tokens changed. With
`--prompt-depth deep` every layer gets fresh tokens of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tunesuite.errors import TunesuiteError
from tunesuite.modes.own_prompts import register_prompt


class EncoderOutputFrames(nn.Module):
    """Learned frames after the encoder's output: a memory the decoder's cross-attention reads beside the audio.
    They start small (the model's init_std): the first keys are near zero, so the frozen model's transcripts
    barely move before training."""

    def __init__(self, num_frames: int, width: int, std: float):
        super().__init__()
        self.frames = nn.Parameter(torch.randn(num_frames, width) * std)

    def extend(self, hidden: torch.Tensor) -> torch.Tensor:
        """The encoder's output (batch, frames, width) with the prompt frames after it."""
        return torch.cat([hidden, self.frames.to(hidden.dtype).expand(hidden.shape[0], -1, -1)], dim=1)

    def hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = kwargs.get("encoder_hidden_states")
        if hidden is not None:
            kwargs["encoder_hidden_states"] = self.extend(hidden)
        return args, kwargs


class EncoderInputTokens(nn.Module):
    """VPT for Whisper's encoder: tokens ahead of the audio frames at layer 0's input (deep: fresh ones at every
    layer's input), taken off the encoder's output again."""

    def __init__(self, layers: int, num_tokens: int, width: int, std: float):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(layers, num_tokens, width) * std)

    def _tokens(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        return self.tokens[layer].to(like.dtype).expand(like.shape[0], -1, -1)

    def replacer(self, layer: int) -> Callable:
        """Layer 0: the tokens put ahead of the frames; a deeper layer (deep): the previous layer's tokens replaced."""
        def replace(module: nn.Module, args: tuple) -> tuple:
            hidden, n = args[0], 0 if layer == 0 else self.tokens.shape[1]
            return (torch.cat([self._tokens(layer, hidden), hidden[:, n:]], dim=1), *args[1:])

        return replace

    def drop(self, module: nn.Module, args: tuple, output: Any) -> Any:
        """The encoder's states without the tokens (every layer's too, when hidden states are returned)."""
        n = self.tokens.shape[1]
        output["last_hidden_state"] = output["last_hidden_state"][:, n:]
        if getattr(output, "hidden_states", None) is not None:
            frames = output["last_hidden_state"].shape[1]
            output["hidden_states"] = tuple(h[:, n:] if h.shape[1] > frames else h for h in output["hidden_states"])
        return output


def whisper_prompt(model: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """Frames after the encoder's output when the model has a decoder; else tokens at the encoder's input."""
    count, depth = settings["num_virtual_tokens"], settings.get("depth") or "shallow"
    if count < 1:
        raise TunesuiteError(f"--num-virtual-tokens {count}: must be at least 1 for Whisper prompts")
    config, decoder = model.config, getattr(model.base_model, "decoder", None)
    std = getattr(config, "init_std", 0.02)
    if decoder is not None:
        if depth != "shallow":
            raise TunesuiteError(f"--prompt-depth {depth}: a Whisper speech-recognition prompt is frames after the "
                                 "encoder's output, which every decoder layer reads already; use --prompt-depth "
                                 "shallow")
        model.prompt = EncoderOutputFrames(count, config.d_model, std)
        decoder.register_forward_pre_hook(model.prompt.hook, with_kwargs=True)
        return model
    encoder = model.get_encoder()
    layers = len(encoder.layers) if depth == "deep" else 1
    model.prompt = EncoderInputTokens(layers, count, config.d_model, std)
    for i in range(layers):
        encoder.layers[i].register_forward_pre_hook(model.prompt.replacer(i))
    encoder.register_forward_hook(model.prompt.drop)
    return model


register_prompt("whisper")(whisper_prompt)
