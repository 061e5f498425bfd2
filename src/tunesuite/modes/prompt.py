"""Soft prompts + the head: peft's prompt methods for text models, our own prompt modules for vision and speech."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING

from tunesuite.errors import TunesuiteError
from tunesuite.models import families
from tunesuite.modes.freezing import freeze_all_but, keep_frozen_norms_in_eval
from tunesuite.registry import Family, ModeContext, cache_decided_by_model, register_mode

if TYPE_CHECKING:  # torch loads with the model, not with the registry (`tunesuite modes` needs none)
    from torch import nn


@dataclass
class PromptArgs:
    _argument_group_name = "mode prompt"
    prompt_method: str = field(
        default="prompt_tuning",
        metadata={"help": "Soft-prompt method for text models (peft).",
                  "choices": ["prompt_tuning", "p_tuning", "prefix_tuning"]})
    num_virtual_tokens: int = field(default=20, metadata={"help": "Number of learnable prompt tokens."})
    prompt_init_text: str | None = field(
        default=None, metadata={"help": "prompt_tuning: initialise the prompt from this text."})
    prompt_depth: str = field(
        default="shallow",
        metadata={"help": "ViT-like prompt tokens: first layer only (shallow) or every layer (deep).",
                  "choices": ["shallow", "deep"]})
    prompt_pad: int = field(default=8, metadata={
        "help": "Image models without prompt tokens (ResNet, ConvNeXt, Swin...): width in pixels of the learnable "
                "border."})


KINDS = {"peft": "peft prompt tuning, p-tuning", "tokens": "prompt tokens", "pixels": "pixel border",
         "frames": "frames ahead of the audio",
         "whisper": "frames after the encoder (speech recognition), tokens at its input (classification)"}


def _on_family(family: Family) -> str:
    kind = family.prompt or families.DEFAULT_PROMPT.get(family.modality)
    return f"ok ({KINDS[kind]})" if kind in KINDS else "refused: no prompt module for this model type"


def _bf16_loss(family: Family) -> str | None:
    """Speech prompt frames lost 0.079 WER in bf16 (bench/precision.py's parity runs); the others kept parity."""
    if (family.prompt or families.DEFAULT_PROMPT.get(family.modality)) == "frames":
        return "speech prompt frames lost 0.079 WER in bf16 (bench/precision.py)"
    return None


# The cache: Whisper's prompt sits after its frozen encoder, so it trains on cached encoder outputs; prompts inside
# a backbone change its features every step (feature_cache.why_not refuses those).
@register_mode("prompt", help="soft prompts (peft prompt / p- / prefix tuning; our own for vision and speech) "
               "+ the head", learning_rate=1e-2, small_model_learning_rate=3e-2, args=PromptArgs, on_family=_on_family,
               bf16_loss=_bf16_loss, feature_cache=cache_decided_by_model)
def prompt(model: nn.Module, ctx: ModeContext) -> nn.Module:
    if ctx.task.model.prompt_module is not None:  # our own prompt modules (vision, speech)
        if not ctx.continued:  # else a finished prompt run's prompts, restored: they keep training
            model = ctx.task.model.prompt_module(model, ctx.args, ctx.model_path)
        freeze_all_but(model, ctx.head, extra_name_parts=("prompt",))
        keep_frozen_norms_in_eval(model)
        return model
    if ctx.task.model.peft_task_type is None:
        raise TunesuiteError(f"mode prompt is not available for the {ctx.task.name} task")
    return model if ctx.continued else _peft_prompt(model, ctx)  # a finished run's peft prompt is loaded trainable


def _peft_prompt(model: nn.Module, ctx: ModeContext) -> nn.Module:
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, PromptTuningInit, get_peft_model

    args: PromptArgs = ctx.args
    config = model.config  # the token width is the input embeddings' (ALBERT: embedding_size, DistilBERT: dim)
    common = {"task_type": ctx.task.model.peft_task_type, "num_virtual_tokens": args.num_virtual_tokens,
              "modules_to_save": list(ctx.head), "token_dim": families.token_dim(model),
              "num_layers": config.num_hidden_layers, "num_attention_heads": config.num_attention_heads}
    if args.prompt_init_text and args.prompt_method != "prompt_tuning":
        raise TunesuiteError("--prompt-init-text works only with --prompt-method prompt_tuning")
    if args.prompt_method == "prompt_tuning":
        init = {}
        if args.prompt_init_text:
            init = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": args.prompt_init_text,
                    "tokenizer_name_or_path": ctx.model_path}
        peft_config = PromptTuningConfig(**common, **init)
    elif args.prompt_method == "p_tuning":
        peft_config = PromptEncoderConfig(**common, encoder_hidden_size=config.hidden_size)
    else:
        _require_past_key_values(model)
        # prefixes are keys and values: the layers' width, not the embeddings'
        peft_config = PrefixTuningConfig(**{**common, "token_dim": config.hidden_size})
    return get_peft_model(model, peft_config)


def _require_past_key_values(model: nn.Module) -> None:
    """peft's prefix tuning feeds its prefixes as `past_key_values`; refuse up front where the model takes none
    (transformers 5.24 renamed BERT's to `cache`), instead of failing at the first training step."""
    for module in (model, model.base_model):
        if "past_key_values" in inspect.signature(module.forward).parameters:
            return
    raise TunesuiteError(f"--prompt-method prefix_tuning: this {model.config.model_type} model (transformers "
                         f"{version('transformers')}) takes no past_key_values, which peft's prefix tuning needs; "
                         "use --prompt-method prompt_tuning or p_tuning")

