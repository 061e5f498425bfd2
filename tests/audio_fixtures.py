"""Audio classification test data: clips of one tone each, whose pitch is the class (low / mid / high)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from asr_fixtures import RATE

PITCHES = {"low": 300.0, "mid": 900.0, "high": 2000.0}


def pitch_clip(pitch: float, rng: random.Random, seconds: float | None = None) -> np.ndarray:
    """A tone of `pitch` (+-5%) at a random loudness, 0.2-0.4 s long, in a little noise."""
    seconds = seconds or rng.uniform(0.2, 0.4)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * pitch * rng.uniform(0.95, 1.05) * t + rng.uniform(0, 6))
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 0.02, len(t))
    return (tone + noise).astype(np.float32)


def write_pitch_csvs(folder: Path, sizes: dict[str, int], classes: dict[str, int] | None = None,
                     seed: int = 0) -> Path:
    """train.csv / validation.csv / test.csv of path,label; `classes` (name -> weight) skews the classes."""
    rng = random.Random(seed)
    classes = classes or dict.fromkeys(PITCHES, 1)
    cycle = [name for name, weight in classes.items() for _ in range(weight)]
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            for i in range(n):
                name = cycle[i % len(cycle)] if split == "train" else list(classes)[i % len(classes)]
                sf.write(folder / "wavs" / f"{split}-{i}.wav", pitch_clip(PITCHES[name], rng), RATE)
                writer.writerow([f"wavs/{split}-{i}.wav", name])
    return folder


@pytest.fixture(scope="session")
def pitch_data(tmp_path_factory) -> Path:
    return write_pitch_csvs(tmp_path_factory.mktemp("pitches"), {"train": 48, "validation": 12, "test": 12})
