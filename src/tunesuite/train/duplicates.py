"""Leakage between splits: exact duplicate rows across train, eval and test, counted in the log with a warning
and listed in OUT/duplicates.csv (split, row, other_split, other_row).

A row's key is its input as the model would see it, normalised: text case-folded with whitespace collapsed,
images as the hash of their decoded RGB pixels, audio as the hash of its decoded samples (so the same picture
saved under two names still counts). Rows are numbered within the split as the run uses it (an eval split carved
from train is numbered in that carved split).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Image as ImageFeature

from tunesuite import data
from tunesuite.config.resolve import RunConfig
from tunesuite.data.audio_columns import undecoded
from tunesuite.files import write_text_atomic

log = logging.getLogger("tunesuite")
FILE = "duplicates.csv"
ORDER = ("train", "eval", "test")  # each split is checked against the ones before it
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif"}


def _digest(*parts: bytes) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part)
        h.update(b"\x1f")
    return h.hexdigest()


def _image_key(image: Any) -> str:
    rgb = image.convert("RGB")
    return _digest(b"image", repr(rgb.size).encode(), rgb.tobytes())


def _audio_key(samples: Any) -> str:
    return _digest(b"audio", np.ascontiguousarray(np.asarray(samples, dtype=np.float32)).tobytes())


def _file_key(source: Any) -> str | None:
    """A file (path or bytes) decoded: pixels for an image, samples for audio; None when it is neither."""
    from PIL import Image, UnidentifiedImageError

    opened = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(opened) as image:
            return _image_key(image)
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    import soundfile as sf

    if isinstance(opened, io.BytesIO):
        opened.seek(0)
    try:
        samples, _ = sf.read(opened, dtype="float32", always_2d=False)
    except (RuntimeError, OSError, sf.LibsndfileError):
        return None
    return _audio_key(samples)


def value_key(value: Any, base: Path) -> str:
    """One input value -> its normalised key (see the module docstring)."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return _image_key(value)
    if isinstance(value, dict) and value.get("array") is not None:
        return _audio_key(value["array"])
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        found = _file_key(value.get("bytes") or value["path"])
        return found or _digest(b"file", str(value.get("path")).encode())
    if isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base / value
        if path.suffix.lower() in IMAGE_SUFFIXES | AUDIO_SUFFIXES and path.is_file():
            found = _file_key(path)
            if found:
                return found
        return _digest(b"text", " ".join(value.casefold().split()).encode())
    return _digest(b"value", repr(value).encode())


def input_columns(split: Any, cfg: RunConfig) -> list[str]:
    """The columns the model reads: the task's named input column(s), else every column but the label."""
    args = cfg.task_args
    named = getattr(args, "text_column", None) or [c for c in (getattr(args, "image_column", None),
                                                                getattr(args, "audio_column", None)) if c]
    named = [named] if isinstance(named, str) else list(named)
    return [c for c in named if c in split.column_names] or [c for c in split.column_names
                                                               if c != cfg.data.label_column]


def base_of(cfg: RunConfig) -> Path:
    """The folder relative file paths in the data are read from."""
    base = Path(cfg.data.dataset).expanduser()
    return base if base.is_dir() else base.parent


def row_keys(split: Any, cfg: RunConfig) -> list[str]:
    base = base_of(cfg)
    columns = input_columns(split, cfg)
    split = split.select_columns(columns)
    for column in columns:  # images and audio as bytes/path, decoded here (an unreadable file is keyed by its path)
        if isinstance(split.features[column], ImageFeature):
            split = split.cast_column(column, ImageFeature(decode=False))
        split = undecoded(split, column)
    return [_digest(*(value_key(row[c], base).encode() for c in columns)) for row in split]


def find(keys: dict[str, list[str]]) -> list[tuple[str, int, str, int]]:
    """(split, row, other split, other row): each row of a later split whose key a row of an earlier one has
    (the earliest such row)."""
    found, seen = [], {}
    for split in (s for s in ORDER if s in keys):
        for row, key in enumerate(keys[split]):
            if key in seen and seen[key][0] != split:
                found.append((split, row, *seen[key]))
        for row, key in enumerate(keys[split]):
            seen.setdefault(key, (split, row))
    return found


def run_splits(raw: Any, cfg: RunConfig) -> dict[str, Any]:
    """The run's splits, the same ones preprocess made (quietly: preprocess already said how they were made)."""
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        return data.select_splits(raw, cfg.data, cfg.training.seed)
    finally:
        log.setLevel(level)


def listed(path: Path, header: list[str], rows: list[Any], what: str, counts: str) -> None:
    """Write the leaked rows to `path` (CSV) and warn with their counts: the exact and the near check's ending."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, buffer.getvalue())
    log.warning("%s across splits (leakage: scores on them are not on unseen data): %s; listed in %s",
                what, counts, path)


def check(raw: Any, cfg: RunConfig, out: Path) -> list[tuple[str, int, str, int]]:
    """Count the duplicates across the run's splits; warn and write OUT/duplicates.csv when there are any."""
    splits = run_splits(raw, cfg)
    if len(splits) < 2:
        return []
    found = find({name: row_keys(split, cfg) for name, split in splits.items()})
    (out / FILE).unlink(missing_ok=True)  # an earlier run's list never outlives its data
    if not found:
        log.info("duplicates: none across %s", ", ".join(splits))
        return []
    pairs: dict[tuple[str, str], int] = {}
    for split, _, other, _ in found:
        pairs[(split, other)] = pairs.get((split, other), 0) + 1
    counts = ", ".join(f"{n:,} {s} rows of {len(splits[s]):,} also in {o}" for (s, o), n in pairs.items())
    listed(out / FILE, ["split", "row", "other_split", "other_row"], found, "duplicates", counts)
    return found
