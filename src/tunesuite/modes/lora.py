"""LoRA (peft): low-rank adapters on chosen linear or convolution layers, plus the head."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tunesuite.errors import TunesuiteError
from tunesuite.models import families
from tunesuite.modes import lora_init
from tunesuite.modes.freezing import keep_frozen_norms_in_eval
from tunesuite.registry import AutoRule, Family, ModeContext, register_mode

if TYPE_CHECKING:  # torch loads with the model, not with the registry (`tunesuite modes` needs none)
    from torch import nn

log = logging.getLogger("tunesuite")
ALL_LINEAR = "all-linear"  # peft's own shorthand: every linear layer but the output layer


@dataclass
class LoraArgs:
    _argument_group_name = "mode lora"
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names LoRA adapts, or all-linear (default: the model family's "
                                        "attention projections; else every linear layer outside the head)."})
    use_dora: bool = field(default=False, metadata={"help": "DoRA: weight-decomposed LoRA (peft use_dora)."})
    use_rslora: bool = field(default=False, metadata={"help": "Rank-stabilised LoRA scaling alpha/sqrt(r) (peft)."})
    lora_layers: int | None = field(
        default=None, metadata={"help": "Adapt only the top N layers of the backbone's stack: the layers below stay "
                                        "frozen and their output is computed once (the partial feature cache)."})
    lora_init: str = field(default=lora_init.DEFAULT, metadata={
        "help": "How A and B start (peft init_lora_weights): " + ", ".join(lora_init.SUPPORTED) + ", pissa_niter_N."})


def _target_modules(model: nn.Module, ctx: ModeContext) -> list[str] | str:
    from torch import nn

    chosen = ctx.args.lora_target_modules
    if chosen == [ALL_LINEAR]:
        if ctx.args.lora_layers is None:
            return ALL_LINEAR
        return _in_top_layers(model, [n for n, m in model.named_modules() if isinstance(m, nn.Linear)],
                              ctx.args.lora_layers)
    targets = chosen or families.lora_targets(model, ctx.head)
    names = [n for n, m in model.named_modules() if not list(m.children())]
    if not any(n == t or n.endswith("." + t) for n in names for t in targets):
        model_type = getattr(model.config, "model_type", "?")
        examples = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in names})[:8])
        raise TunesuiteError(f"mode lora: no module named {', '.join(targets)} in this {model_type} model; "
                             f"pass --lora-target-modules with names such as {examples}, or all-linear")
    return list(targets) if ctx.args.lora_layers is None else _in_top_layers(model, targets, ctx.args.lora_layers)


def _skipped(model: nn.Module, targets: list[str] | str) -> list[str]:
    """The targeted modules peft cannot adapt (families.lora_refused), named once in the log; refused when
    nothing else is left to adapt."""
    if targets == ALL_LINEAR:
        return []
    refused = families.lora_refused(model, list(targets))
    if not refused:
        return []
    names = [n for n, m in model.named_modules() if not list(m.children())
             and any(n == t or n.endswith("." + t) for t in targets)]
    if len(refused) == len(names):
        raise TunesuiteError(f"mode lora: every targeted module ({len(refused)}) is a grouped (depthwise) "
                             "convolution, which peft cannot adapt; pass --lora-target-modules with other layers "
                             "(e.g. the pointwise 1x1 convolutions), or use --mode bitfit or full")
    shown = ", ".join(refused[:5]) + (f", ... ({len(refused)} in all)" if len(refused) > 5 else "")
    log.info("LoRA: skipped %d grouped (depthwise) convolutions peft cannot adapt: %s", len(refused), shown)
    return refused


def _in_top_layers(model: nn.Module, targets: list[str], top: int) -> list[str]:
    """The full names of the target modules inside the top `top` layers of the backbone's stack."""
    found = families.layer_stack(model)
    if found is None:
        raise TunesuiteError("--lora-layers: this model has no stack of layers; drop the flag to adapt them all")
    stack, layers = found
    if not 1 <= top <= len(layers):
        raise TunesuiteError(f"--lora-layers {top}: the model has {len(layers)} layers in {stack}; "
                             f"pass 1 to {len(layers)}")
    first = len(layers) - top
    names = [f"{stack}.{i}.{n}" for i, layer in enumerate(layers) if i >= first
             for n, m in layer.named_modules() if not list(m.children())]
    chosen = [n for n in names if any(n == t or n.endswith("." + t) for t in targets)]
    if not chosen:
        raise TunesuiteError(f"--lora-layers {top}: none of {', '.join(targets[:4])} is inside the top {top} "
                             f"layers of {stack}; check --lora-target-modules")
    return chosen


def _on_family(family: Family) -> str:
    if family.lora_targets:
        return f"ok ({', '.join(family.lora_targets)})"
    return "ok (every Linear outside the head; a CNN's Conv2d)"


def _lora_cache(args: LoraArgs) -> str | None:
    """Blocked only by EVA's start: LoRA on the top layers only (--lora-layers N, or --lora-target-modules naming
    them) leaves the layers below frozen, and the partial cache finds that from what trains (its dropout acts
    above the cut); EVA's data pass runs the whole model on the raw batches."""
    return lora_init.cache_blocker(args.lora_init)


# Learning rates (model under SMALL_MODEL parameters / larger): the text demo's 2e-3 beat 5e-4 (README "Which mode?")
def _init_callbacks(args: LoraArgs) -> list:
    """What --lora-init needs around training (transformers imported only when a run asks for it)."""
    from tunesuite.modes.lora_init_callback import callbacks

    return callbacks(args)


@register_mode("lora", help="LoRA adapters (peft) + the head", learning_rate=2e-3, small_model_learning_rate=1e-2,
               args=LoraArgs, mergeable=True, on_family=_on_family, feature_cache=_lora_cache,
               callbacks=_init_callbacks,
               auto=AutoRule(40, lambda f: True,
                             "a large pretrained model: LoRA won on the text demo and keeps the backbone intact"))
def lora(model: nn.Module, ctx: ModeContext) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    if ctx.continued:  # a finished LoRA run's adapter, loaded trainable: it keeps training
        keep_frozen_norms_in_eval(model)
        return model
    args: LoraArgs = ctx.args
    targets = _target_modules(model, ctx)
    init = lora_init.peft_value(args.lora_init, args.use_dora)
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                        target_modules=targets, exclude_modules=_skipped(model, targets) or None,
                        modules_to_save=list(ctx.head), task_type=ctx.task.model.peft_task_type,
                        use_dora=args.use_dora, use_rslora=args.use_rslora, init_lora_weights=init,
                        **lora_init.extra_config(init))
    model = get_peft_model(model, config)
    lora_init.prepare(model, init)
    families.expose_conv_geometry(model)
    # Frozen BatchNorm statistics are not part of the adapter: updating them would make the saved run differ.
    keep_frozen_norms_in_eval(model)
    return model
