"""peft's other adapter methods (IA3, LoHa, LoKr, VeRA, OFT, AdaLoRA, BOFT, FourierFT, HRA) as modes, through one path:
a table of methods, each registered by `register_method`, its targets the family's LoRA targets, its flags handed to
its peft config.

A method's flags are `<mode>_<peft config field>` (`--loha-r 8` is LoHaConfig(r=8)); `--<mode>-target-modules`
replaces the family's targets. A method that adapts Linear layers only is refused on a family whose targets are
convolutions, in one line naming the modes that do work there (the README's family table says the same).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from tunesuite.errors import TunesuiteError
from tunesuite.models import families
from tunesuite.modes.freezing import keep_frozen_norms_in_eval
from tunesuite.registry import Family, ModeContext, cache_decided_by_model, in_registration_order, modes, register_mode

if TYPE_CHECKING:  # torch loads with the model, not with the registry (`tunesuite modes` needs none)
    from torch import nn

log = logging.getLogger("tunesuite")
LINEAR_ONLY = "Linear layers only, and this family's targets are convolutions"
NO_MAPS = "its Linear targets take 4-D maps, which this method's peft layer reads as convolution input"
ADALORA_PLACEHOLDER_STEPS = 1000  # AdaLoraConfig refuses none; adalora_schedule writes the run's before step one


def _targets_flag() -> Any:
    return field(default=None, metadata={"help": "Module names it adapts (default: the model family's LoRA targets)."})


@dataclass
class Ia3Args:
    _argument_group_name = "mode ia3"
    ia3_target_modules: list[str] | None = _targets_flag()


@dataclass
class LohaArgs:
    _argument_group_name = "mode loha"
    loha_r: int = field(default=8, metadata={"help": "LoHa rank (of each of its two Hadamard factors)."})
    loha_alpha: int = field(default=16, metadata={"help": "LoHa scaling alpha."})
    loha_module_dropout: float = field(default=0.0, metadata={"help": "Chance of skipping a LoHa adapter per step."})
    loha_target_modules: list[str] | None = _targets_flag()


@dataclass
class LokrArgs:
    _argument_group_name = "mode lokr"
    lokr_r: int = field(default=8, metadata={"help": "LoKr rank (of its Kronecker factor)."})
    lokr_alpha: int = field(default=16, metadata={"help": "LoKr scaling alpha."})
    lokr_module_dropout: float = field(default=0.0, metadata={"help": "Chance of skipping a LoKr adapter per step."})
    lokr_target_modules: list[str] | None = _targets_flag()


@dataclass
class VeraArgs:
    _argument_group_name = "mode vera"
    vera_r: int = field(default=256, metadata={"help": "VeRA rank of the shared frozen random projections."})
    vera_dropout: float = field(default=0.0, metadata={"help": "VeRA dropout."})
    vera_target_modules: list[str] | None = _targets_flag()


@dataclass
class OftArgs:
    _argument_group_name = "mode oft"
    oft_block_size: int = field(default=32, metadata={
        "help": "OFT block size (peft shrinks it to divide a layer's input width, and logs a warning)."})
    oft_module_dropout: float = field(default=0.0, metadata={"help": "OFT multiplicative dropout."})
    oft_target_modules: list[str] | None = _targets_flag()


@dataclass
class AdaloraArgs:
    _argument_group_name = "mode adalora"
    adalora_init_r: int = field(default=12, metadata={"help": "AdaLoRA's starting rank of every target."})
    adalora_target_r: int = field(default=8, metadata={"help": "AdaLoRA's average rank once the budget is spent."})
    adalora_lora_alpha: int = field(default=16, metadata={"help": "AdaLoRA scaling alpha."})
    adalora_orth_reg_weight: float = field(default=0.5, metadata={"help": "Weight of the orthogonality loss."})
    adalora_warmup: float = field(default=0.1, metadata={
        "help": "Share of the steps before ranks start to shrink (peft tinit)."})
    adalora_final: float = field(default=0.2, metadata={
        "help": "Share of the steps at the end with ranks fixed (peft tfinal)."})
    adalora_target_modules: list[str] | None = _targets_flag()


@dataclass
class BoftArgs:
    _argument_group_name = "mode boft"
    boft_block_size: int = field(default=4, metadata={"help": "BOFT block size (must divide each target's input "
                                                              "width)."})
    boft_n_butterfly_factor: int = field(default=1, metadata={"help": "BOFT butterfly factors (1: plain OFT)."})
    boft_dropout: float = field(default=0.0, metadata={"help": "BOFT multiplicative dropout."})
    boft_target_modules: list[str] | None = _targets_flag()


@dataclass
class FourierftArgs:
    _argument_group_name = "mode fourierft"
    fourierft_n_frequency: int = field(default=1000, metadata={
        "help": "FourierFT spectral coefficients learned per target (at most its in x out)."})
    fourierft_scaling: float = field(default=150.0, metadata={"help": "FourierFT scaling of the inverse DFT."})
    fourierft_target_modules: list[str] | None = _targets_flag()


@dataclass
class HraArgs:
    _argument_group_name = "mode hra"
    hra_r: int = field(default=8, metadata={"help": "HRA: Householder reflections per target (even)."})
    hra_apply_GS: bool = field(default=False, metadata={"help": "HRA: orthogonalise the reflections "
                                                                "(Gram-Schmidt)."})
    hra_target_modules: list[str] | None = _targets_flag()


@dataclass(frozen=True)
class Method:
    """One peft method as a mode: its peft config class, its flags, what it adapts, its default learning rates."""

    name: str
    config: str  # the peft config class
    args: type  # its flags, each `<name>_<config field>`
    help: str
    convolutions: bool  # adapts convolutions as well as Linear layers
    learning_rate: float  # on a model of SMALL_MODEL parameters or more
    small_model_learning_rate: float
    mergeable: bool = True  # peft's merge_and_unload folds it into the base weights
    maps: bool = True  # adapts Linear layers fed 4-D channels-last maps (peft's OFT takes 4-D input for a conv's)
    extra: Callable[[list[str]], dict[str, Any]] = lambda targets: {}  # more config arguments, from the targets
    callbacks: Callable[[Any], list] | None = None  # (its flags) -> TrainerCallbacks the method needs
    own_flags: tuple[str, ...] = ()  # flags its callbacks read, not handed to the peft config
    # its own targets, (model, head) -> module names, where the family's LoRA targets do not apply (LN tuning's
    # norms), with what the family table says of them; and its own refusal of a family (None: the rules above)
    find_targets: Callable[[Any, list[str]], list[str]] | None = None
    targets_help: str = ""
    refuse: Callable[[Family], str | None] | None = None
    needs_bias: bool = False  # adapts a target's bias: targets without one are skipped (BEFT)
    # what the matched targets ({name: module}) must share for it, as the reason they do not (None: they fit)
    check_targets: Callable[[dict[str, Any]], str | None] | None = None


# Learning rates (docs/peft-methods.md, "Default learning rates"): on models of 10M parameters or more, LoRA's for the
# low-rank methods and 1e-2 for the scale-only ones (IA3, VeRA), each kept after 0.3x / 1x / 3x on the real MiniLM
# over three seeds; on smaller models, 3e-2 where 3x the first guess won on the image or CTC arm and tied on the
# others (LoHa, AdaLoRA, BOFT, FourierFT, HRA), else the first guess.
def _adalora_callbacks(mode_args: Any) -> list[Any]:
    """AdaLoRA's schedule callback (transformers imported only when a run asks for it)."""
    from tunesuite.modes import adalora_schedule

    return adalora_schedule.callbacks(mode_args)


METHODS = [
    Method("ia3", "IA3Config", Ia3Args, "IA3 (peft): learned scales of the targets' outputs + the head", True,
           learning_rate=1e-2, small_model_learning_rate=3e-2,
           extra=lambda targets: {"feedforward_modules": []}),  # scale outputs: the targets are attention
    Method("loha", "LoHaConfig", LohaArgs, "LoHa (peft): low-rank Hadamard-product adapters + the head", True,
           learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("lokr", "LoKrConfig", LokrArgs, "LoKr (peft): low-rank Kronecker-product adapters + the head", True,
           learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("vera", "VeraConfig", VeraArgs, "VeRA (peft): scales of shared random projections + the head", False,
           learning_rate=1e-2, small_model_learning_rate=3e-2),
    Method("oft", "OFTConfig", OftArgs, "OFT (peft): orthogonal rotations of the targets' weights + the head", True,
           learning_rate=2e-3, small_model_learning_rate=1e-2, maps=False),
    Method("adalora", "AdaLoraConfig", AdaloraArgs, "AdaLoRA (peft): SVD-form LoRA whose ranks move to the layers "
           "that matter + the head", True, learning_rate=2e-3, small_model_learning_rate=3e-2,
           extra=lambda targets: {"total_step": ADALORA_PLACEHOLDER_STEPS},
           callbacks=_adalora_callbacks, own_flags=("adalora_warmup", "adalora_final")),
    Method("boft", "BOFTConfig", BoftArgs, "BOFT (peft): butterfly-factored orthogonal rotations + the head", False,
           learning_rate=2e-3, small_model_learning_rate=3e-2, maps=False),
    Method("fourierft", "FourierFTConfig", FourierftArgs, "FourierFT (peft): a few learned spectral coefficients "
           "of each target's update + the head", False, learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("hra", "HRAConfig", HraArgs, "HRA (peft): Householder reflections of the targets' weights + the head",
           True, learning_rate=2e-3, small_model_learning_rate=3e-2),
]


def _working(family: Family) -> list[str]:
    """The registered modes that do not refuse `family`."""
    return [m.name for m in in_registration_order(modes())
            if m.on_family is None or m.on_family(family).startswith("ok")]


def _refusal(method: Method, family: Family) -> str | None:
    if method.refuse is not None:
        return method.refuse(family)
    if family.conv_targets and not method.convolutions:
        return LINEAR_ONLY
    if family.channels_last and not method.maps:
        return NO_MAPS
    return None


def _on_family(method: Method) -> Callable[[Family], str]:
    def cell(family: Family) -> str:
        if _refusal(method, family):
            return f"refused: {_refusal(method, family)}"
        if method.targets_help:
            return f"ok ({method.targets_help})"
        if family.lora_targets:
            return f"ok ({', '.join(family.lora_targets)})"
        return "ok (every Linear outside the head" + ("; a CNN's Conv2d)" if method.convolutions else ")")

    return cell


def _flag_name(method: Method) -> str:
    """How its flags start on the command line (`ln_tuning` -> ln-tuning)."""
    return method.name.replace("_", "-")


def _targets(model: nn.Module, ctx: ModeContext, method: Method) -> list[str]:
    """The chosen or family targets, less the modules they name that this method cannot adapt (grouped
    convolutions; convolutions for a Linear-only method). Refused when nothing is left."""
    chosen = getattr(ctx.args, f"{method.name}_target_modules")
    family, flag = families.family(model), f"--{_flag_name(method)}-target-modules"
    model_type = family.model_type

    def refused(why: str) -> TunesuiteError:
        working = ", ".join(n for n in _working(family) if n != method.name)
        return TunesuiteError(f"mode {method.name}: {why}; use --mode {working}, or pass {flag} naming other layers")

    if not chosen and _refusal(method, family):
        raise refused(f"{_refusal(method, family)} ({model_type})")
    found = method.find_targets(model, ctx.head) if method.find_targets else families.lora_targets(model, ctx.head)
    targets = list(chosen or found)
    matched = {n: m for n, m in model.named_modules() if not list(m.children())
               and any(n == t or n.endswith("." + t) for t in targets)}
    if not matched:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if not list(m.children())})[:8]
        raise TunesuiteError(f"mode {method.name}: no module named {', '.join(targets)} in this {model_type} model; "
                             f"pass {flag} with names such as {', '.join(names)}")
    unfit = method.check_targets(matched) if method.check_targets else None
    if unfit:
        raise refused(f"{unfit} ({model_type})")
    excluded = families.lora_refused(model, targets)
    if not method.convolutions:
        from torch import nn

        convolutions = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
        excluded += [n for n, m in matched.items() if isinstance(m, convolutions) and n not in excluded]
    biasless = [n for n, m in matched.items() if method.needs_bias and getattr(m, "bias", None) is None]
    excluded += [n for n in biasless if n not in excluded]
    if len(excluded) == len(matched):
        why = ("it shifts a layer's bias, and none of these layers has one" if len(biasless) == len(matched)
               else LINEAR_ONLY if not method.convolutions
               else "grouped (depthwise) convolutions, which peft cannot adapt")
        raise refused(f"{why} ({model_type}: {', '.join(targets)})")
    if not excluded:
        return targets
    log.info("%s: skipped %d modules it cannot adapt: %s", method.name, len(excluded), ", ".join(excluded[:5]))
    return [n for n in matched if n not in excluded]  # full names (not every peft config has exclude_modules)


def _config_arguments(config: type, method: Method, args: Any) -> dict[str, Any]:
    """The method's flags as its peft config's arguments: `loha_r` -> r, `vera_dropout` -> vera_dropout (a field
    of the config as it is); the targets are resolved apart."""
    prefix, known = method.name + "_", {f.name for f in fields(config)}
    return {(f.name.removeprefix(prefix) if f.name.removeprefix(prefix) in known else f.name): getattr(args, f.name)
            for f in fields(args) if f.name != f"{prefix}target_modules" and f.name not in method.own_flags}


def _head_leaves(model: nn.Module, head: list[str]) -> list[str]:
    """The head's modules that hold weights themselves (BERT's pooler -> bert.pooler.dense): peft's merge for
    methods other than LoRA cannot unwrap a saved module that holds none (it reads its .weight). No task type
    either: peft would add the whole classifier to these again."""
    return [n for n, m in model.named_modules() if any(n == h or n.startswith(h + ".") for h in head)
            and list(m.parameters(recurse=False))]


def _apply(method: Method) -> Callable[[nn.Module, ModeContext], nn.Module]:
    def apply(model: nn.Module, ctx: ModeContext) -> nn.Module:
        import peft

        if ctx.continued:  # a finished run's adapter, loaded trainable: it keeps training
            keep_frozen_norms_in_eval(model)
            return model
        targets = _targets(model, ctx, method)
        kind = getattr(peft, method.config)
        config = kind(target_modules=targets, modules_to_save=_head_leaves(model, ctx.head),
                      **_config_arguments(kind, method, ctx.args),
                      **method.extra(targets))
        try:
            model = peft.get_peft_model(model, config)
        except (ValueError, TypeError, NotImplementedError) as e:  # a size its flags set does not fit a layer
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TunesuiteError(f"mode {method.name}: peft cannot adapt this {families.family(model).model_type} "
                                 f"model with these flags: {why} (change the --{_flag_name(method)}-* flags, or "
                                 f"pass --{_flag_name(method)}-target-modules naming other layers)") from e
        families.expose_conv_geometry(model)
        keep_frozen_norms_in_eval(model)  # frozen BatchNorm statistics are not part of the adapter
        return model

    return apply


def register_method(method: Method) -> None:
    """`method` as a mode: the same path for every peft method in METHODS. A method with callbacks of its own
    (AdaLoRA's rank schedule, which reads the whole peft model) trains on the normal path only."""
    register_mode(method.name, help=method.help, learning_rate=method.learning_rate,
                  small_model_learning_rate=method.small_model_learning_rate, args=method.args,
                  mergeable=method.mergeable, on_family=_on_family(method), compared=False,
                  callbacks=method.callbacks, feature_cache=None if method.callbacks else cache_decided_by_model)(
        _apply(method))


for _method in METHODS:
    register_method(_method)
