"""The four fine-tuning modes. A mode turns a freshly loaded model into the model to train.

Every mode keeps the head trainable: the task's head modules plus any module the checkpoint did not
have weights for (newly initialised modules must learn). Adding a mode is one decorated function.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import TunesuiteError

log = logging.getLogger(__name__)

MODES: dict[str, Callable[..., nn.Module]] = {}
# Learning rates used when the user sets none: adapters and prompts need far more than full fine-tuning.
DEFAULT_LEARNING_RATES = {"full": 5e-5, "frozen": 1e-3, "lora": 5e-4, "prompt": 5e-3}


def register_mode(name: str):
    def add(fn):
        MODES[name] = fn
        return fn

    return add


def trainable_summary(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The backbone's main stack of layers/stages: the ModuleList holding the most parameters."""
    best, best_size = None, 0
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = (name, module), size
    return best


def _keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """Frozen BatchNorm layers must not update running statistics when the trainer calls .train()."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.train = types.MethodType(lambda self, mode=True: nn.Module.train(self, False), module)
            module.eval()


def freeze_all_but(model: nn.Module, head: list[str], extra_name_parts: tuple[str, ...] = ()) -> None:
    for name, param in model.named_parameters():
        module_name = name.rsplit(".", 1)[0]
        param.requires_grad = any(module_name == h or module_name.startswith(h + ".") for h in head) or any(
            part in name for part in extra_name_parts
        )


@register_mode("full")
def full(model: nn.Module, task: Any, cfg: Any, head: list[str]) -> nn.Module:
    model.requires_grad_(True)
    return model


@register_mode("frozen")
def frozen(model: nn.Module, task: Any, cfg: Any, head: list[str]) -> nn.Module:
    freeze_all_but(model, head)
    top = cfg.tuning.trainable_layers
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
    _keep_frozen_norms_in_eval(model)
    return model


def _target_modules(model: nn.Module, task: Any, cfg: Any) -> list[str]:
    model_type = getattr(model.config, "model_type", "?")
    targets = cfg.tuning.lora_target_modules or task.lora_targets.get(model_type)
    if not targets:
        raise TunesuiteError(f"mode lora: no default LoRA targets for model type {model_type!r}; "
                             "pass --lora-target-modules")
    leaf_names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if not list(m.children())}
    if not set(targets) & leaf_names:
        examples = ", ".join(sorted(leaf_names)[:8])
        raise TunesuiteError(f"mode lora: no module named {', '.join(targets)} in this {model_type} model; "
                             f"pass --lora-target-modules with names such as {examples}")
    return list(targets)


@register_mode("lora")
def lora(model: nn.Module, task: Any, cfg: Any, head: list[str]) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    t = cfg.tuning
    config = LoraConfig(r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                        target_modules=_target_modules(model, task, cfg), modules_to_save=list(head),
                        task_type=task.peft_task_type)
    model = get_peft_model(model, config)
    # Frozen BatchNorm statistics are not part of the adapter: updating them would make the saved run differ.
    _keep_frozen_norms_in_eval(model)
    return model


@register_mode("prompt")
def prompt(model: nn.Module, task: Any, cfg: Any, head: list[str]) -> nn.Module:
    if task.prompt_module is not None:  # our own prompt modules (vision, speech)
        model = task.prompt_module(model, cfg)
        freeze_all_but(model, head, extra_name_parts=("prompt",))
        _keep_frozen_norms_in_eval(model)
        return model
    if task.peft_task_type is None:
        raise TunesuiteError(f"mode prompt is not available for the {task.name} task")
    return _peft_prompt(model, task, cfg, head)


def _peft_prompt(model: nn.Module, task: Any, cfg: Any, head: list[str]) -> nn.Module:
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, PromptTuningInit, get_peft_model

    t = cfg.tuning
    common = {"task_type": task.peft_task_type, "num_virtual_tokens": t.num_virtual_tokens,
              "modules_to_save": list(head)}
    if t.prompt_method == "prompt_tuning":
        init = {}
        if t.prompt_init_text:
            init = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": t.prompt_init_text,
                    "tokenizer_name_or_path": cfg.model.model}
        config = PromptTuningConfig(**common, **init)
    elif t.prompt_method == "p_tuning":
        config = PromptEncoderConfig(**common, encoder_hidden_size=model.config.hidden_size)
    else:
        _require_past_key_values(model)
        config = PrefixTuningConfig(**common)
    if t.prompt_init_text and t.prompt_method != "prompt_tuning":
        raise TunesuiteError("--prompt-init-text works only with --prompt-method prompt_tuning")
    return get_peft_model(model, config)


def _require_past_key_values(model: nn.Module) -> None:
    """peft's prefix tuning feeds its prefixes as `past_key_values`; refuse up front where the model takes none
    (transformers 5.24 renamed BERT's to `cache`), instead of failing at the first training step."""
    import inspect

    for module in (model, model.base_model):
        if "past_key_values" in inspect.signature(module.forward).parameters:
            return
    raise TunesuiteError(f"--prompt-method prefix_tuning: this {model.config.model_type} model (transformers "
                         f"{_version('transformers')}) takes no past_key_values, which peft's prefix tuning needs; "
                         "use --prompt-method prompt_tuning or p_tuning")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
