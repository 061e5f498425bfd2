"""Export a finished run as a plain transformers checkpoint (LoRA merged into the base weights)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from tunesuite import registry
from tunesuite.errors import TunesuiteError
from tunesuite.files import give_user_modes
from tunesuite.models.run_folder import CONFIG, RunFolder

log = logging.getLogger("tunesuite")
PROMPT_REFUSED = ("prompt runs cannot be exported as a plain checkpoint (the prompts need tunesuite's hooks); "
                  "load them with tunesuite.load()")


def _peft_refused() -> str:
    mergeable = ", ".join(m.name for m in registry.in_registration_order(registry.modes()) if m.mergeable)
    return f"only adapters of a mergeable mode ({mergeable}) can be merged; peft prompts need tunesuite.load()"


def _mergeable_by_model(model: Any) -> bool:
    """For a mode this process does not know: judge from the model (peft LoRA merges, anything else does not)."""
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config") and all(
        c.peft_type.value == "LORA" for c in model.peft_config.values())


def merge(out_dir: str | Path, dest: str | Path) -> Path:
    """Write `out_dir`'s model to `dest` as a standalone checkpoint that transformers.pipeline() can load.

    A plain checkpoint (full, frozen, bitfit) is re-saved; adapters are merged into the base weights
    (merge_and_unload) when the run's mode is `mergeable`. Model, config (with label maps) and processor go
    to `dest`; run_config.yaml is copied for the record.
    """
    out, dest = Path(out_dir), Path(dest)
    predictor, model = merged_model(out)
    if RunFolder.read(out).has_scorer:  # zero-shot / few-shot: the classes are in the scorer, not the head
        log.warning("%s: a %s run's classes live in its scorer, which plain transformers does not read: load %s with "
                    "tunesuite.load(), not pipeline()", out, RunFolder.read(out).mode, dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    predictor.processor.save_pretrained(dest)
    shutil.copy2(out / CONFIG, dest / CONFIG)
    give_user_modes(dest)  # safetensors writes 0600; the rest follows the user's umask
    return dest


def merged_model(out: Path, prompt_refused: str = PROMPT_REFUSED) -> tuple[Any, Any]:
    """(the run's Predictor, its model as one plain transformers model): adapters of a mergeable mode merged,
    anything that cannot merge refused in one line (`prompt_refused` says why for our own prompts)."""
    from tunesuite.models.predictor import load  # torch: not at import (tunesuite imports this module)

    run = RunFolder.read(out)
    predictor = load(out)
    model = predictor.model
    adapters, prompts = hasattr(model, "peft_config"), getattr(model, "prompt", None) is not None
    if adapters or prompts:  # more than a plain checkpoint: only a mergeable mode can become one
        mode = registry.modes().get(str(run.mode))  # None: a mode this process has not registered
        mergeable = mode.mergeable if mode is not None else _mergeable_by_model(model)
        if not (mergeable and hasattr(model, "merge_and_unload")):
            raise TunesuiteError(f"{out}: {_peft_refused() if adapters else prompt_refused}")
        model = model.merge_and_unload()
        unwrap_head_copies(model)
    return predictor, model


def unwrap_head_copies(model: Any) -> None:
    """The trained copies of the head in place of peft's wrappers, which some methods' merge leaves (LN tuning):
    saved wrapped, the head's weights would load under names transformers does not know."""
    for name, module in list(model.named_modules()):
        copies = getattr(module, "modules_to_save", None)
        if name and copies is not None and hasattr(module, "original_module") and len(copies) == 1:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, next(iter(copies.values())))
