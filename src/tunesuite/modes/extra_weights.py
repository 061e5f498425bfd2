"""Weights a mode saves beside the model's own (our prompts, a zero-shot scorer): while such a checkpoint loads,
transformers is told they are expected, so its load report does not list them as UNEXPECTED. Any other unexpected
key is still reported. The mode's `restore` loads them afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

IGNORED = "_keys_to_ignore_on_load_unexpected"


@contextlib.contextmanager
def expected(auto_model: Any, path: str | Path, config_key: str, pattern: str) -> Iterator[None]:
    """While loading `path`: keys matching `pattern` are expected when its config records `config_key`."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    found = auto_model._model_mapping.get(type(config), None) if getattr(config, config_key, None) else None
    classes = [] if found is None else list(found) if isinstance(found, (tuple, list)) else [found]  # one or several
    before = [cls.__dict__.get(IGNORED) for cls in classes]
    for cls in classes:
        setattr(cls, IGNORED, [*(getattr(cls, IGNORED) or []), pattern])
    try:
        yield
    finally:
        for cls, keys in zip(classes, before, strict=True):
            if keys is None:
                delattr(cls, IGNORED)
            else:
                setattr(cls, IGNORED, keys)
