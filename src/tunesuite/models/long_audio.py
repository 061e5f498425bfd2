"""Clips longer than a sequence-to-sequence speech model's window (30 s for Whisper), transcribed whole.

Whisper pads or cuts every clip to its window, so a longer file needs cutting into windows. transformers' ASR
pipeline owns that: overlapping windows (a sixth of the window on each side, its default), each generated on its
own, the texts merged where the overlaps agree. We hand it the loaded model as it is: a LoRA run's base model with
its adapters still in place (peft's `get_base_model`), so nothing is merged or copied.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from tunesuite.tasks.asr_seq2seq import window_samples

STRIDE_SHARE = 6  # each window overlaps its neighbours by window / 6 on each side (the pipeline's own default)


@contextlib.contextmanager
def _quiet_pipeline() -> Iterator[None]:
    """The pipeline's notes on chunking with seq2seq models ('very experimental') and on generation arguments are
    about its own internals, not the user's input: kept out of the user's log."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def transcribe(model: torch.nn.Module, processor: Any, clips: list[np.ndarray], batch_size: int = 8) -> list[str]:
    """Each clip's whole text, read in overlapping windows by transformers' ASR pipeline (windows batched)."""
    from transformers import pipeline

    if not clips:
        return []
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    features = processor.feature_extractor
    rate = features.sampling_rate
    seconds = window_samples(features) / rate
    with _quiet_pipeline():
        reader = pipeline("automatic-speech-recognition", model=base, tokenizer=processor.tokenizer,
                          feature_extractor=features, chunk_length_s=seconds,
                          stride_length_s=seconds / STRIDE_SHARE, dtype=base.dtype)
        inputs = [{"raw": np.asarray(clip, dtype=np.float32), "sampling_rate": rate} for clip in clips]
        with torch.no_grad():
            outputs = reader(inputs, batch_size=batch_size)
    return [out["text"].strip() for out in outputs]
