"""Clips longer than a sequence-to-sequence speech model's window (30 s for Whisper), transcribed whole.

Whisper pads or cuts every clip to its window, so a longer file needs cutting into windows. transformers' ASR
pipeline owns that: overlapping windows (a sixth of the window on each side, its default), each generated on its
own, the texts merged where the overlaps agree. We hand it the loaded model as it is: a LoRA run's base model with
its adapters still in place (peft's `get_base_model`), so nothing is merged or copied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tunesuite import logs
from tunesuite.tasks.asr_seq2seq import window_samples

STRIDE_SHARE = 6  # each window overlaps its neighbours by window / 6 on each side (the pipeline's own default)


def transcribe(model: torch.nn.Module, processor: Any, clips: list[np.ndarray], batch_size: int = 8) -> list[str]:
    """Each clip's whole text, read in overlapping windows by transformers' ASR pipeline (windows batched)."""
    from transformers import pipeline

    if not clips:
        return []
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    features = processor.feature_extractor
    rate = features.sampling_rate
    seconds = window_samples(features) / rate
    with logs.transformers_errors_only():  # the pipeline's notes on its own chunking are not the user's
        reader = pipeline("automatic-speech-recognition", model=base, tokenizer=processor.tokenizer,
                          feature_extractor=features, chunk_length_s=seconds,
                          stride_length_s=seconds / STRIDE_SHARE, dtype=base.dtype)
        inputs = [{"raw": np.asarray(clip, dtype=np.float32), "sampling_rate": rate} for clip in clips]
        with torch.no_grad():
            outputs = reader(inputs, batch_size=batch_size)
    return [out["text"].strip() for out in outputs]
