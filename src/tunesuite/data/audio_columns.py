"""Audio columns of loaded splits, shared by the speech tasks: find the column, keep it undecoded, crop clips."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Audio, Dataset, DatasetDict

from tunesuite.data import audio
from tunesuite.data.columns import find_column
from tunesuite.errors import TunesuiteError

AUDIO_GUESSES = ("audio", "path", "file_name", "file", "filename", "audio_path", "audio_filepath")


SKIP_HINT = "or pass --skip-bad-files to skip (and count) such rows"


def load_cell(cell: Any, rate: int, base: Path | None, where: str, skip: bool) -> np.ndarray | None:
    """A row's audio decoded at `rate`; unreadable: None when skipping, else one error line naming the row."""
    try:
        return audio.load(cell, rate, base)
    except audio.AudioError as e:
        if not skip:
            raise TunesuiteError(f"{where}: {e}; fix or remove the file, {SKIP_HINT}") from None
        return None


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


AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff"}  # what soundfile/libsndfile reads


def class_folders(path: Path) -> DatasetDict | None:
    """A folder of class sub-folders of audio files (or train/ validation/ test/ folders of them) as audio,label
    splits, read without datasets' audiofolder (which needs torchcodec); None when it holds no audio files."""
    roots = {d.name: d for d in sorted(path.iterdir()) if d.is_dir() and d.name in ("train", "validation", "test")}
    splits = {}
    for name, root in (roots or {"train": path}).items():
        files = [(f, d.name) for d in sorted(root.iterdir()) if d.is_dir() for f in sorted(d.rglob("*"))
                 if f.suffix.lower() in AUDIO_SUFFIXES]
        if not files:
            return None
        splits[name] = Dataset.from_dict({"audio": [str(f) for f, _ in files], "label": [c for _, c in files]})
    return DatasetDict(splits)
