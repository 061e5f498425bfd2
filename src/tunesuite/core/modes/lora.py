"""LoRA (peft): low-rank adapters on chosen linear or convolution layers, plus the head."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ...errors import TunesuiteError
from ...registry import ModeContext, register_mode
from .freezing import keep_frozen_norms_in_eval


@dataclass
class LoraArgs:
    _argument_group_name = "mode lora"
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names LoRA adapts (default: the task's table per model type)."})


def _target_modules(model: nn.Module, ctx: ModeContext) -> list[str]:
    model_type = getattr(model.config, "model_type", "?")
    targets = ctx.args.lora_target_modules or ctx.task.model.lora_targets.get(model_type)
    if not targets:
        raise TunesuiteError(f"mode lora: no default LoRA targets for model type {model_type!r}; "
                             "pass --lora-target-modules")
    leaf_names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if not list(m.children())}
    if not set(targets) & leaf_names:
        examples = ", ".join(sorted(leaf_names)[:8])
        raise TunesuiteError(f"mode lora: no module named {', '.join(targets)} in this {model_type} model; "
                             f"pass --lora-target-modules with names such as {examples}")
    return list(targets)


@register_mode("lora", help="LoRA adapters (peft) + the head", learning_rate=5e-4, args=LoraArgs, mergeable=True)
def lora(model: nn.Module, ctx: ModeContext) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    if ctx.continued:  # a finished LoRA run's adapter, loaded trainable: it keeps training
        keep_frozen_norms_in_eval(model)
        return model
    args: LoraArgs = ctx.args
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                        target_modules=_target_modules(model, ctx), modules_to_save=list(ctx.head),
                        task_type=ctx.task.model.peft_task_type)
    model = get_peft_model(model, config)
    # Frozen BatchNorm statistics are not part of the adapter: updating them would make the saved run differ.
    keep_frozen_norms_in_eval(model)
    return model
