"""peft's newer adapter methods as modes: MiSS, C3A, SHiRA, RandLoRA, VB-LoRA, LN tuning, RoAd, DeLoRA, WaveFT,
GraLoRA, TinyLoRA, Uni-LoRA, PVeRA, DEFT, GLoRA, PSOFT, HiRA, Super-Tuning, BEFT, AdaMSS, PEANuT and FRoD: their
flags and their rows of the generic path in `peft_methods` (targets, refusals, saving, merging).

All but HiRA adapt Linear layers only (peft refuses convolutions), so a CNN family is refused in one line naming the
modes that work. LN tuning trains the LayerNorms of the layer stack instead of the family's LoRA targets; BEFT shifts
biases, so it skips targets without one; FRoD decomposes each kind of target across the layers jointly, so a family
whose stages differ in width is refused. Defaults are peft's, except where peft's would not fit a model of width 384
(MiniLM) or 32 (the tests' tiny models): C3A's block, VB-LoRA's vector length, RoAd's group and WaveFT's
coefficients (each noted on its flag). The methods peft 0.21.2 has that are not here, and why, are in
docs/peft-methods.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tunesuite.models import families
from tunesuite.modes.peft_methods import LINEAR_ONLY, Method, _targets_flag, register_method
from tunesuite.registry import Family

if TYPE_CHECKING:  # torch loads with the model, not with the registry (`tunesuite modes` needs none)
    from torch import nn


@dataclass
class MissArgs:
    _argument_group_name = "mode miss"
    miss_r: int = field(default=64, metadata={"help": "MiSS shard width (at most each target's input width)."})
    miss_mini_r: int = field(default=1, metadata={"help": "MiSS mini rank (r must divide by it)."})
    miss_dropout: float = field(default=0.0, metadata={"help": "MiSS dropout."})
    miss_target_modules: list[str] | None = _targets_flag()


@dataclass
class C3aArgs:
    _argument_group_name = "mode c3a"
    c3a_block_size: int = field(default=32, metadata={
        "help": "C3A circulant block size; must divide each target's input and output widths (peft's 256 fits no "
                "384-wide model)."})
    c3a_target_modules: list[str] | None = _targets_flag()


@dataclass
class ShiraArgs:
    _argument_group_name = "mode shira"
    shira_r: int = field(default=32, metadata={
        "help": "SHiRA: trains r x (in + out) chosen weights of each target (fewer than the layer holds)."})
    shira_target_modules: list[str] | None = _targets_flag()


@dataclass
class RandloraArgs:
    _argument_group_name = "mode randlora"
    randlora_r: int = field(default=32, metadata={"help": "RandLoRA rank of each frozen random basis."})
    randlora_alpha: int = field(default=640, metadata={"help": "RandLoRA scaling alpha (peft: about 20 x r)."})
    randlora_dropout: float = field(default=0.0, metadata={"help": "RandLoRA dropout."})
    randlora_target_modules: list[str] | None = _targets_flag()


@dataclass
class VbloraArgs:
    _argument_group_name = "mode vblora"
    vblora_r: int = field(default=4, metadata={"help": "VB-LoRA rank."})
    vblora_num_vectors: int = field(default=256, metadata={"help": "VB-LoRA vectors in the shared bank."})
    vblora_vector_length: int = field(default=32, metadata={
        "help": "VB-LoRA vector length; must divide each target's widths (peft's 256 fits no 384-wide model)."})
    vblora_topk: int = field(default=2, metadata={"help": "VB-LoRA: bank vectors mixed per sub-vector."})
    vblora_dropout: float = field(default=0.0, metadata={"help": "VB-LoRA dropout."})
    vblora_target_modules: list[str] | None = _targets_flag()


@dataclass
class LnTuningArgs:
    _argument_group_name = "mode ln_tuning"
    ln_tuning_target_modules: list[str] | None = field(default=None, metadata={
        "help": "Module names it tunes (default: every LayerNorm in the model's layer stack)."})


@dataclass
class RoadArgs:
    _argument_group_name = "mode road"
    road_variant: str = field(default="road_1", metadata={"help": "RoAd variant: road_1, road_2 or road_4."})
    road_group_size: int = field(default=32, metadata={
        "help": "RoAd group size; must divide each target's output width (peft's 64 only speeds inference up; "
                "32 also fits the smallest models)."})
    road_target_modules: list[str] | None = _targets_flag()


@dataclass
class DeloraArgs:
    _argument_group_name = "mode delora"
    delora_r: int = field(default=8, metadata={"help": "DeLoRA rank."})
    delora_lambda: int = field(default=15, metadata={"help": "DeLoRA: the bound on the update's norm."})
    delora_module_dropout: float = field(default=0.0, metadata={"help": "DeLoRA dropout."})
    delora_target_modules: list[str] | None = _targets_flag()


@dataclass
class WaveftArgs:
    _argument_group_name = "mode waveft"
    waveft_n_frequency: int = field(default=1000, metadata={
        "help": "WaveFT wavelet coefficients learned per target (at most its in x out; peft's 2592 exceeds a "
                "32-wide layer)."})
    waveft_scaling: float = field(default=25.0, metadata={"help": "WaveFT scaling of the update."})
    waveft_wavelet_family: str = field(default="db1", metadata={"help": "WaveFT wavelet (pywt names: db1, sym2...)."})
    waveft_target_modules: list[str] | None = _targets_flag()


@dataclass
class GraloraArgs:
    _argument_group_name = "mode gralora"
    gralora_r: int = field(default=32, metadata={"help": "GraLoRA rank (divisible by --gralora-k)."})
    gralora_alpha: int = field(default=64, metadata={"help": "GraLoRA scaling alpha."})
    gralora_k: int = field(default=2, metadata={"help": "GraLoRA: k x k sub-blocks per target."})
    gralora_hybrid_r: int = field(default=0, metadata={"help": "GraLoRA: rank of a plain LoRA beside the blocks."})
    gralora_dropout: float = field(default=0.0, metadata={"help": "GraLoRA dropout."})
    gralora_target_modules: list[str] | None = _targets_flag()


@dataclass
class TinyloraArgs:
    _argument_group_name = "mode tinylora"
    tinylora_r: int = field(default=2, metadata={"help": "TinyLoRA: rank of each target's frozen SVD."})
    tinylora_u: int = field(default=64, metadata={"help": "TinyLoRA: trainable numbers per target (its vector v)."})
    tinylora_weight_tying: float = field(default=0.0, metadata={
        "help": "TinyLoRA: share of targets that share one v (0: each its own, 1: one v for all)."})
    tinylora_init_v_bound: float = field(default=0.02, metadata={"help": "TinyLoRA: v starts uniform in +-this."})
    tinylora_dropout: float = field(default=0.0, metadata={"help": "TinyLoRA dropout."})
    tinylora_target_modules: list[str] | None = _targets_flag()


@dataclass
class UniloraArgs:
    _argument_group_name = "mode unilora"
    unilora_r: int = field(default=4, metadata={"help": "Uni-LoRA rank of the update each target reads."})
    unilora_theta_d_length: int = field(default=256, metadata={
        "help": "Uni-LoRA: length of the one trained vector every target's factors are drawn from."})
    unilora_dropout: float = field(default=0.0, metadata={"help": "Uni-LoRA dropout."})
    unilora_target_modules: list[str] | None = _targets_flag()


@dataclass
class PveraArgs:
    _argument_group_name = "mode pvera"
    pvera_r: int = field(default=256, metadata={"help": "PVeRA rank of the shared frozen random projections."})
    pvera_d_initial: float = field(default=0.1, metadata={"help": "PVeRA: start of its lambda_d scales."})
    pvera_dropout: float = field(default=0.0, metadata={"help": "PVeRA dropout."})
    pvera_target_modules: list[str] | None = _targets_flag()


@dataclass
class DeftArgs:
    _argument_group_name = "mode deft"
    deft_r: int = field(default=8, metadata={"help": "DEFT rank of its projection and injection."})
    deft_decomposition_method: str = field(default="relu", metadata={
        "help": "DEFT projector: relu (peft's default) or qr (orthogonal)."})
    deft_dropout: float = field(default=0.0, metadata={"help": "DEFT dropout."})
    deft_target_modules: list[str] | None = _targets_flag()


@dataclass
class GloraArgs:
    _argument_group_name = "mode glora"
    glora_r: int = field(default=8, metadata={"help": "GLoRA rank of the parts set to lora."})
    glora_config_A_B: str = field(default="lora", metadata={
        "help": "GLoRA weight scale and shift: lora, vector, constant or none."})
    glora_config_C: str = field(default="lora", metadata={"help": "GLoRA weight-to-bias part: lora, vector or none."})
    glora_config_D_E: str = field(default="constant", metadata={
        "help": "GLoRA bias scale and shift: vector, constant or none."})
    glora_target_modules: list[str] | None = _targets_flag()


@dataclass
class PsoftArgs:
    _argument_group_name = "mode psoft"
    psoft_r: int = field(default=32, metadata={
        "help": "PSOFT rank: the r x r rotation it trains (at most each target's narrower width)."})
    psoft_alpha: int = field(default=32, metadata={"help": "PSOFT scaling alpha."})
    psoft_dropout: float = field(default=0.0, metadata={"help": "PSOFT dropout."})
    psoft_target_modules: list[str] | None = _targets_flag()


@dataclass
class HiraArgs:
    _argument_group_name = "mode hira"
    hira_r: int = field(default=32, metadata={"help": "HiRA rank of the factors its Hadamard update is made of."})
    hira_dropout: float = field(default=0.0, metadata={"help": "HiRA dropout."})
    hira_target_modules: list[str] | None = _targets_flag()


@dataclass
class SupertuningArgs:
    _argument_group_name = "mode supertuning"
    supertuning_sparsity: float = field(default=0.99, metadata={
        "help": "Super-Tuning: share of each target's weights kept frozen (0.99: one in a hundred trains)."})
    supertuning_select_top: bool = field(default=True, metadata={
        "help": "Super-Tuning trains the largest weights (--no-supertuning-select-top: the smallest)."})
    supertuning_r: int | None = field(default=None, metadata={
        "help": "Super-Tuning: rank of a LoRA beside the sparse weights (the paper's Supra; default none)."})
    supertuning_target_modules: list[str] | None = _targets_flag()


@dataclass
class BeftArgs:
    _argument_group_name = "mode beft"
    beft_target_modules: list[str] | None = _targets_flag()


@dataclass
class AdamssArgs:
    _argument_group_name = "mode adamss"
    adamss_r: int = field(default=100, metadata={
        "help": "AdaMSS: singular vectors of each target it clusters (peft caps it at the target's narrower width)."})
    adamss_num_subspaces: int = field(default=5, metadata={"help": "AdaMSS: subspaces the singular vectors form."})
    adamss_subspace_rank: int = field(default=1, metadata={"help": "AdaMSS: trained rank in each subspace."})
    adamss_target_modules: list[str] | None = _targets_flag()


@dataclass
class PeanutArgs:
    _argument_group_name = "mode peanut"
    peanut_r: int = field(default=32, metadata={"help": "PEANuT: width of its small network's hidden layers."})
    peanut_depth: int = field(default=0, metadata={"help": "PEANuT: hidden layers on each side (0: just A and B)."})
    peanut_act_fn: str = field(default="relu", metadata={"help": "PEANuT activation (a transformers ACT2FN name)."})
    peanut_scaling: float = field(default=1.0, metadata={"help": "PEANuT: scale of its update."})
    peanut_target_modules: list[str] | None = _targets_flag()


@dataclass
class FrodArgs:
    _argument_group_name = "mode frod"
    frod_sparse_rate: float = field(default=0.01, metadata={
        "help": "FRoD: share of the off-diagonal rotation entries it trains."})
    frod_regularization_alpha: float = field(default=0.001, metadata={
        "help": "FRoD: ridge term of its joint decomposition of the layers' weights."})
    frod_dropout: float = field(default=0.0, metadata={"help": "FRoD dropout."})
    frod_target_modules: list[str] | None = _targets_flag()


def layer_norms(model: nn.Module, head: list[str]) -> list[str]:
    """LN tuning's targets: every LayerNorm inside the layer stack (a speech model's frozen front end and the head
    stay out)."""
    from torch import nn

    stack = families.layer_stack(model)
    if stack is None:
        return []
    return [f"{stack[0]}.{n}" for n, m in stack[1].named_modules() if isinstance(m, nn.LayerNorm)]


def _ln_refusal(family: Family) -> str | None:
    if family.conv_targets:
        return "a CNN's norms are BatchNorm, and LN tuning tunes LayerNorms"
    return None


FROD_SHARES = "it decomposes each kind of target jointly across the layers, so they must share one shape"


def _frod_refusal(family: Family) -> str | None:
    if family.conv_targets:
        return LINEAR_ONLY
    if family.staged:
        return FROD_SHARES + ", and this family's stages differ in width"
    return None


def _frod_shapes(matched: dict[str, nn.Module]) -> str | None:
    """FRoD's rule on models no family entry describes: every target of one kind (peft's category: `query`,
    `self_attn_q_proj`...) has one weight shape."""
    from peft.tuners.frod.model import _category_from_key  # the grouping FRoD itself uses

    shapes: dict[str, set[tuple[int, ...]]] = {}
    for name, module in matched.items():
        shapes.setdefault(_category_from_key(name), set()).add(tuple(module.weight.shape))
    mixed = {kind: sorted(s) for kind, s in shapes.items() if len(s) > 1}
    if not mixed:
        return None
    kind, seen = next(iter(mixed.items()))
    return f"{FROD_SHARES}, and its {kind} layers come in {len(seen)} shapes ({', '.join(map(str, seen))})"


# Learning rates, as for the methods in peft_methods (docs/peft-methods.md, "Default learning rates"): LoRA's for the
# low-rank ones and IA3's for those that train a few numbers per layer, on models of 10M parameters or more; 3e-2 on
# smaller models where 3x won on one small-model arm and tied on the others.
NEWER = [
    Method("miss", "MissConfig", MissArgs, "MiSS (peft): a shared shard of each target's weight + the head", False,
           learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("c3a", "C3AConfig", C3aArgs, "C3A (peft): block-circular convolution adapters + the head", False,
           learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("shira", "ShiraConfig", ShiraArgs, "SHiRA (peft): a sparse set of the targets' own weights + the head",
           False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("randlora", "RandLoraConfig", RandloraArgs, "RandLoRA (peft): scales of full-rank sums of frozen random "
           "bases + the head", False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("vblora", "VBLoRAConfig", VbloraArgs, "VB-LoRA (peft): LoRA factors mixed from one shared vector bank "
           "+ the head", False, learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("ln_tuning", "LNTuningConfig", LnTuningArgs, "LN tuning (peft): the layer stack's LayerNorms + the head",
           False, learning_rate=2e-3, small_model_learning_rate=3e-2, find_targets=layer_norms,
           targets_help="every LayerNorm in the layer stack", refuse=_ln_refusal),
    Method("road", "RoadConfig", RoadArgs, "RoAd (peft): learned 2-D rotations of the targets' outputs + the head",
           False, learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("delora", "DeloraConfig", DeloraArgs, "DeLoRA (peft): LoRA with a bounded, normalised update + the head",
           False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("waveft", "WaveFTConfig", WaveftArgs, "WaveFT (peft): a few learned wavelet coefficients of each "
           "target's update + the head", False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("gralora", "GraloraConfig", GraloraArgs, "GraLoRA (peft): LoRA split into k x k independent blocks + the "
           "head", False, learning_rate=2e-3, small_model_learning_rate=1e-2, maps=False),  # unpacks (N, L, C)
    Method("tinylora", "TinyLoraConfig", TinyloraArgs, "TinyLoRA (peft): a tiny vector per target, projected into "
           "its frozen SVD + the head", False, learning_rate=1e-2, small_model_learning_rate=3e-2),
    Method("unilora", "UniLoraConfig", UniloraArgs, "Uni-LoRA (peft): every target's LoRA factors drawn from one "
           "trained vector + the head", False, learning_rate=1e-2, small_model_learning_rate=3e-2),
    Method("pvera", "PveraConfig", PveraArgs, "PVeRA (peft): VeRA's scales with input-dependent projections + the "
           "head", False, learning_rate=1e-2, small_model_learning_rate=3e-2),
    Method("deft", "DeftConfig", DeftArgs, "DEFT (peft): a low-rank projection out of each weight and a learned "
           "injection + the head", False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("glora", "GloraConfig", GloraArgs, "GLoRA (peft): low-rank scales and shifts of the weights and biases "
           "+ the head", False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("psoft", "PsoftConfig", PsoftArgs, "PSOFT (peft): an r x r rotation in each weight's principal subspace "
           "+ the head", False, learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("hira", "HiraConfig", HiraArgs, "HiRA (peft): a low-rank update multiplied into the weights (Hadamard) "
           "+ the head", True, learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("supertuning", "SupertuningConfig", SupertuningArgs, "Super-Tuning (peft): each target's largest "
           "weights (one in a hundred) + the head", False, learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("beft", "BeftConfig", BeftArgs, "BEFT (peft): a learned bias shift of each target + the head", False,
           learning_rate=1e-2, small_model_learning_rate=3e-2, needs_bias=True),
    Method("adamss", "AdamssConfig", AdamssArgs, "AdaMSS (peft): low-rank updates in subspaces of each weight's SVD "
           "+ the head", False, learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("peanut", "PeanutConfig", PeanutArgs, "PEANuT (peft): a small network of the weights computes each update "
           "+ the head", False, learning_rate=2e-3, small_model_learning_rate=3e-2),
    Method("frod", "FrodConfig", FrodArgs, "FRoD (peft): sparse rotations of a basis shared by the layers + the head",
           False, learning_rate=1e-2, small_model_learning_rate=3e-2, refuse=_frod_refusal, check_targets=_frod_shapes,
           extra=lambda targets: {"progressbar": False}),  # its decomposition takes a moment: no bar in the log
]

for _method in NEWER:
    register_method(_method)
