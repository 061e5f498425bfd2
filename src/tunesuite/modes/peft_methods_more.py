"""peft's newer adapter methods (MiSS, C3A, SHiRA, RandLoRA, VB-LoRA, LN tuning, RoAd, DeLoRA, WaveFT, GraLoRA) as
modes: their flags and their rows of the generic path in `peft_methods` (targets, refusals, saving, merging).

Every one adapts Linear layers only (peft refuses convolutions), so a CNN family is refused in one line naming the
modes that work; LN tuning trains the LayerNorms of the layer stack instead of the family's LoRA targets. Defaults
are peft's, except where peft's would not fit a model of width 384 (MiniLM) or 32 (the tests' tiny models): C3A's
block, VB-LoRA's vector length, RoAd's group and WaveFT's coefficients (each noted on its flag). The methods peft
0.21.2 has that are not here, and why, are in docs/peft-methods.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tunesuite.models import families
from tunesuite.modes.peft_methods import Method, _targets_flag, register_method
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


# Learning rates: LoRA's, kept after a sweep on the real MiniLM (docs/peft-methods.md, "Default learning rates").
NEWER = [
    Method("miss", "MissConfig", MissArgs, "MiSS (peft): a shared shard of each target's weight + the head", False,
           learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("c3a", "C3AConfig", C3aArgs, "C3A (peft): block-circular convolution adapters + the head", False,
           learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("shira", "ShiraConfig", ShiraArgs, "SHiRA (peft): a sparse set of the targets' own weights + the head",
           False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("randlora", "RandLoraConfig", RandloraArgs, "RandLoRA (peft): scales of full-rank sums of frozen random "
           "bases + the head", False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("vblora", "VBLoRAConfig", VbloraArgs, "VB-LoRA (peft): LoRA factors mixed from one shared vector bank "
           "+ the head", False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("ln_tuning", "LNTuningConfig", LnTuningArgs, "LN tuning (peft): the layer stack's LayerNorms + the head",
           False, learning_rate=2e-3, small_model_learning_rate=1e-2, find_targets=layer_norms,
           targets_help="every LayerNorm in the layer stack", refuse=_ln_refusal),
    Method("road", "RoadConfig", RoadArgs, "RoAd (peft): learned 2-D rotations of the targets' outputs + the head",
           False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("delora", "DeloraConfig", DeloraArgs, "DeLoRA (peft): LoRA with a bounded, normalised update + the head",
           False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("waveft", "WaveFTConfig", WaveftArgs, "WaveFT (peft): a few learned wavelet coefficients of each "
           "target's update + the head", False, learning_rate=2e-3, small_model_learning_rate=1e-2),
    Method("gralora", "GraloraConfig", GraloraArgs, "GraLoRA (peft): LoRA split into k x k independent blocks + the "
           "head", False, learning_rate=2e-3, small_model_learning_rate=1e-2, maps=False),  # unpacks (N, L, C)
]

for _method in NEWER:
    register_method(_method)
