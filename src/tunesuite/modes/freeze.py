"""Modes that train the model's own weights: full, frozen (the head, optionally the top layers), bitfit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import nn

from tunesuite.errors import TunesuiteError
from tunesuite.models.families import layer_stack
from tunesuite.modes.freezing import freeze_all_but, keep_frozen_norms_in_eval
from tunesuite.registry import ModeContext, register_mode
from tunesuite.train.trainer import UnfreezeCallback

log = logging.getLogger("tunesuite")


@register_mode("full", help="every parameter", learning_rate=5e-5, frozen_inputs=False)
def full(model: nn.Module, ctx: ModeContext) -> nn.Module:
    model.requires_grad_(True)
    return model


@dataclass
class FrozenArgs:
    _argument_group_name = "mode frozen"
    trainable_layers: int = field(default=0, metadata={"help": "Also train the top N encoder layers/stages."})
    unfreeze_after_epochs: float | None = field(
        default=None, metadata={"help": "Train frozen for K epochs, then unfreeze everything (full)."})
    unfreeze_learning_rate: float | None = field(
        default=None, metadata={"help": "With --unfreeze-after-epochs: the learning rate once everything trains "
                                        "(default: a tenth of --learning-rate), continuing the schedule."})
    cache_features: str = field(
        default="auto",
        metadata={"help": "Compute the frozen backbone's features (or, with --trainable-layers, the frozen lower "
                          "layers' output) once and train on them, when valid (auto) or never.",
                  "choices": ["auto", "never"]})


def _frozen_cache_blocker(args: FrozenArgs) -> str | None:
    if args.cache_features == "never":
        return "turned off by --cache-features never"
    if args.unfreeze_after_epochs is not None:
        return "--unfreeze-after-epochs: the backbone trains later"
    return None


def _unfreeze_later(args: FrozenArgs) -> list:
    return [] if args.unfreeze_after_epochs is None else [UnfreezeCallback(args.unfreeze_after_epochs,
                                                                             args.unfreeze_learning_rate)]


@register_mode("frozen", help="the head only; --trainable-layers N adds the top N layers", learning_rate=1e-3,
               args=FrozenArgs, feature_cache=_frozen_cache_blocker, callbacks=_unfreeze_later)
def frozen(model: nn.Module, ctx: ModeContext) -> nn.Module:
    args: FrozenArgs = ctx.args
    if args.unfreeze_after_epochs is not None and ctx.world_size > 1:
        raise TunesuiteError("--unfreeze-after-epochs is single-process only (DDP fixes the trainable set at "
                             "start); run frozen, then full with --model OUT")
    freeze_all_but(model, ctx.head)
    top = args.trainable_layers
    if top > 0:
        stack = layer_stack(model)
        if stack is None:
            raise TunesuiteError("--trainable-layers: this model has no stack of layers to unfreeze")
        name, layers = stack
        if top > len(layers):
            raise TunesuiteError(f"--trainable-layers {top}: the model has only {len(layers)} layers in {name}")
        for layer in list(layers)[-top:]:
            layer.requires_grad_(True)
        log.info("frozen mode: also training the top %d of %d layers in %s", top, len(layers), name)
    keep_frozen_norms_in_eval(model)
    return model


@register_mode("bitfit", help="only the bias terms, plus the head (BitFit)", learning_rate=1e-3)
def bitfit(model: nn.Module, ctx: ModeContext) -> nn.Module:
    """BitFit (Ben Zaken et al., 2022): every bias of the backbone trains, no weight matrix does."""
    freeze_all_but(model, ctx.head)
    biases = [p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] == "bias"]
    if not biases:
        raise TunesuiteError(f"mode bitfit: this {model.config.model_type} model has no bias terms to train; "
                             "use --mode lora or frozen")
    for p in biases:
        p.requires_grad_(True)
    keep_frozen_norms_in_eval(model)
    return model
