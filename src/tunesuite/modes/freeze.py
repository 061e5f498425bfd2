"""Modes that train the model's own weights: full, frozen (the head, optionally the top layers), bitfit; and the
recipe of two of them, frozen-then-full (the frozen mode's --unfreeze-after-epochs, with its callback)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunesuite.errors import TunesuiteError
from tunesuite.models.families import layer_stack
from tunesuite.modes.freezing import freeze_all_but, keep_frozen_norms_in_eval
from tunesuite.registry import SMALL_MODEL, AutoRule, ModeContext, Recipe, modes, register_mode, register_recipe

if TYPE_CHECKING:  # torch loads with the model, not with the registry (`tunesuite modes` needs none)
    from torch import nn

log = logging.getLogger("tunesuite")
FEW_PER_CLASS = 10  # training examples per class: below this, only the head learns (--mode auto)


# Learning rates (model under SMALL_MODEL parameters / larger): the demos' settings, README "Which mode?"
@register_mode("full", help="every parameter", learning_rate=5e-5, small_model_learning_rate=1e-3,
               frozen_inputs=False,
               auto=AutoRule(30, lambda f: f.params < SMALL_MODEL,
                             "a small model trains every weight cheaply, and full won on the image data"))
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
    from tunesuite.modes.unfreeze import UnfreezeCallback  # transformers: only for a run that unfreezes

    return [] if args.unfreeze_after_epochs is None else [UnfreezeCallback(args.unfreeze_after_epochs,
                                                                             args.unfreeze_learning_rate)]


@register_mode("frozen", help="the head only; --trainable-layers N adds the top N layers", learning_rate=2e-3,
               small_model_learning_rate=2e-2, args=FrozenArgs, feature_cache=_frozen_cache_blocker,
               callbacks=_unfreeze_later,
               auto=AutoRule(10, lambda f: bool(f.classes) and f.examples / f.classes < FEW_PER_CLASS,
                             f"under {FEW_PER_CLASS} examples per class are too few to move the backbone: the head "
                             "alone"))
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


@register_mode("bitfit", help="only the bias terms, plus the head (BitFit)", learning_rate=1e-3,
               small_model_learning_rate=1e-2, compared=False)
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


def _then_full(epochs: int, params: int) -> dict[str, Any]:
    """The head alone for a third of the epochs (at least 2 in all), then everything at full's learning rate."""
    total = max(epochs, 2)
    return {"num_train_epochs": total, "unfreeze_after_epochs": max(round(total / 3), 1),
            "unfreeze_learning_rate": modes()["full"].learning_rate_for(params)}


register_recipe(Recipe(
    "frozen-then-full", mode="frozen", help="the head first, then everything (--unfreeze-after-epochs)",
    flags=_then_full,
    auto=AutoRule(20, lambda f: f.classes is None and f.params < SMALL_MODEL,
                  "a small model with a sequence output: the head first, then everything won on the speech data")))
