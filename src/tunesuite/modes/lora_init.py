"""`--lora-init`: how LoRA's A and B start, by peft's `init_lora_weights`, and what each start needs around it.

PiSSA and OLoRA move part of each target's weight into A and B (the base weight becomes the residual), so the
adapter as trained fits only the residual model. At the end of training the adapter is saved as peft converts
it for the untouched base model (rank 2r: the trained A, B less their starting values), so a finished run loads
on the checkpoint it named, exports and continues like any LoRA run. Checkpoints during training stay unconverted
(resuming reloads them into the same residual model). EVA starts A from the principal directions of each
target's inputs: one pass over the training batches (peft's `initialize_lora_eva_weights`) before the first step,
with every layer keeping rank r, so the optimizer's parameters stay the same tensors.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tunesuite.errors import TunesuiteError

log = logging.getLogger("tunesuite")
DEFAULT = "default"  # peft's init_lora_weights=True: A Kaiming-uniform, B zero (the adapter starts as a no-op)
# ours -> peft's init_lora_weights
SUPPORTED = {DEFAULT: True, "gaussian": "gaussian", "orthogonal": "orthogonal", "pissa": "pissa", "olora": "olora",
             "eva": "eva"}
MUTATES_BASE = ("pissa", "olora")  # the base weight becomes the residual: converted when the run is saved
# peft values that need what a CPU run without extra packages lacks
UNSUPPORTED = {"loftq": "needs bitsandbytes and a quantised model",
               "corda": "needs peft's own preprocessing pass (preprocess_corda), not wired in",
               "lora_ga": "needs peft's own gradient pass (preprocess_loraga), not wired in",
               "mica": "freezes B, which the LoRA mode's trainable set does not allow"}
PENDING_EVA = "_tunesuite_eva_pending"  # set on a fresh model by the mode; the callback runs EVA once
INITIAL = "_tunesuite_initial_adapter"  # where a PiSSA/OLoRA run's starting adapter was saved


def peft_value(name: str, use_dora: bool) -> bool | str:
    """peft's `init_lora_weights` for `--lora-init NAME`; one error line for a value it cannot run here."""
    works = ", ".join(SUPPORTED)
    if name.startswith("pissa_niter_") and name.removeprefix("pissa_niter_").isdigit():
        value: bool | str = name  # PiSSA by a fast randomised SVD of that many subspace iterations
    elif name in SUPPORTED:
        value = SUPPORTED[name]
    elif name in UNSUPPORTED:
        raise TunesuiteError(f"--lora-init {name}: {UNSUPPORTED[name]}; use one of {works} (or pissa_niter_N)")
    else:
        raise TunesuiteError(f"--lora-init {name}: not a LoRA initialisation; use one of {works} (or pissa_niter_N)")
    if use_dora and value is not True:
        raise TunesuiteError(f"--lora-init {name} with --use-dora: DoRA starts from the default init; drop one")
    return value


def prepare(model: Any, init: bool | str) -> None:
    """After get_peft_model: remember what the end of training or its first step must do for this start."""
    if init == "eva":
        setattr(model, PENDING_EVA, True)
    elif isinstance(init, str) and init.startswith(MUTATES_BASE):
        root = tempfile.mkdtemp(prefix="tunesuite-lora-init-")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        folder = Path(root) / "initial"
        config = model.peft_config["default"]
        config.init_lora_weights, start = True, config.init_lora_weights  # peft's rule for the initial adapter
        try:
            model.save_pretrained(str(folder))
        finally:
            config.init_lora_weights = start
        setattr(model, INITIAL, folder)


def extra_config(init: bool | str) -> dict[str, Any]:
    """More LoraConfig arguments a start needs: EVA keeps every layer at rank r (rho 1), the optimizer's
    parameters then stay the tensors it was given."""
    if init != "eva":
        return {}
    from peft import EvaConfig

    return {"eva_config": EvaConfig(rho=1.0, use_label_mask=False)}


def cache_blocker(name: str) -> str | None:
    """Why the feature cache may not serve a run that starts this way (None: it may)."""
    return "--lora-init eva runs the whole model on the training batches first" if name == "eva" else None
