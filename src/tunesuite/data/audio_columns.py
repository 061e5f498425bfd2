"""Audio columns of loaded splits, shared by the speech tasks: find the column, keep it undecoded, crop clips."""

from __future__ import annotations

import random

import numpy as np
from datasets import Audio, Dataset

from .columns import find_column

AUDIO_GUESSES = ("audio", "path", "file_name", "file", "filename", "audio_path", "audio_filepath")


def audio_column(split: Dataset, wanted: str | None) -> str:
    """--audio-column, else a column typed Audio, else the first usual name present."""
    typed = [c for c, f in split.features.items() if isinstance(f, Audio)]
    return find_column(split, wanted, [*typed, *AUDIO_GUESSES], "--audio-column", "audio")


def undecoded(split: Dataset, column: str) -> Dataset:
    """Hub Audio columns would decode with torchcodec; we take the bytes/path and decode with soundfile."""
    if isinstance(split.features[column], Audio):
        return split.cast_column(column, Audio(decode=False))
    return split


def centre_crop(samples: np.ndarray, length: int) -> np.ndarray:
    """The middle `length` samples (unchanged when shorter)."""
    start = max(0, (len(samples) - length) // 2)
    return samples[start : start + length]


def random_crop(samples: np.ndarray, length: int, rng: random.Random) -> np.ndarray:
    """`length` samples from a random offset (unchanged when shorter)."""
    start = rng.randint(0, max(0, len(samples) - length))
    return samples[start : start + length]
