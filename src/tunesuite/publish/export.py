"""Export a finished run as a plain transformers checkpoint (LoRA merged into the base weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import TunesuiteError


def merge(out_dir: str | Path, dest: str | Path) -> Path:
    """Write `out_dir`'s model to `dest` as a standalone checkpoint that transformers.pipeline() can load.

    LoRA adapters are merged into the base weights (merge_and_unload); full and frozen runs are re-saved.
    Model, config (with label maps) and processor go to `dest`; run_config.yaml is copied for the record.
    """
    from ..predictor import load  # torch: not at import (tunesuite imports this module)

    out, dest = Path(out_dir), Path(dest)
    predictor = load(out)
    model = predictor.model
    if hasattr(model, "merge_and_unload"):
        if not hasattr(model, "peft_config") or any(c.peft_type.value != "LORA" for c in model.peft_config.values()):
            raise TunesuiteError(f"{out}: only LoRA adapters can be merged; peft prompts need tunesuite.load()")
        model = model.merge_and_unload()
    if getattr(model, "prompt", None) is not None:
        raise TunesuiteError(f"{out}: prompt runs cannot be exported as a plain checkpoint (the prompts need "
                             "tunesuite's hooks); load them with tunesuite.load()")
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    predictor.processor.save_pretrained(dest)
    shutil.copy2(out / "run_config.yaml", dest / "run_config.yaml")
    return dest
