"""What `--lora-init` needs around training (lora_init.py holds the choice): EVA's data pass before the first
step, and PiSSA/OLoRA's conversion of the adapter at the final save. Its own module so that registering the LoRA
mode imports no transformers."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tunesuite.files import write_bytes_atomic
from tunesuite.modes.lora_init import DEFAULT, INITIAL, MUTATES_BASE, PENDING_EVA

log = logging.getLogger("tunesuite")


def _eva_inputs(layer_input: Any, model_input: Any, layer_name: str) -> Any:
    """Every position of a target's input, as rows (text, image patches and speech frames alike)."""
    x = layer_input[0] if isinstance(layer_input, tuple | list) else layer_input
    return x.reshape(-1, x.shape[-1])


class LoraInitCallback(TrainerCallback):
    """EVA's data pass before the first step; PiSSA/OLoRA's conversion for the final save."""

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, train_dataloader: Any = None,
                       **kwargs: Any) -> None:
        if model is None or not getattr(model, PENDING_EVA, False):
            return
        setattr(model, PENDING_EVA, False)
        if state.global_step:  # resumed: the checkpoint holds the trained weights
            return
        from peft import initialize_lora_eva_weights

        training = model.training
        model.eval()
        initialize_lora_eva_weights(model, train_dataloader, prepare_model_inputs_fn=None,
                                    prepare_layer_inputs_fn=_eva_inputs, show_progress_bar=False)
        model.train(training)
        log.info("LoRA init eva: A set from the principal directions of each target's inputs (one data pass)")

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        initial = getattr(model, INITIAL, None)
        if initial is None:
            return
        model.save_pretrained = partial(_save_converted, model, str(initial))
        log.info("LoRA init %s: the adapter is saved as a rank-%d LoRA of the untouched base model",
                 model.peft_config["default"].init_lora_weights, 2 * model.peft_config["default"].r)


def _save_converted(model: Any, initial: str, save_directory: str, **kwargs: Any) -> None:
    """peft's save with its conversion to a LoRA of the untouched base model, plus the head's trained copies
    (peft's conversion keeps the LoRA tensors only)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file, save

    type(model).save_pretrained(model, save_directory, path_initial_model_for_weight_conversion=initial, **kwargs)
    file = Path(save_directory) / "adapter_model.safetensors"
    if not file.exists():  # not the main process, or torch's own format asked for
        return
    heads = {k: v for k, v in get_peft_model_state_dict(model).items() if ".lora_" not in k}
    write_bytes_atomic(file, save({**heads, **load_file(file)}, metadata={"format": "pt"}))


def callbacks(mode_args: Any) -> list[TrainerCallback]:
    """The LoRA mode's callbacks: only when its start needs one."""
    init = getattr(mode_args, "lora_init", DEFAULT)
    return [LoraInitCallback()] if init == "eva" or init.startswith(MUTATES_BASE) else []
