"""Leakage the exact check (train/duplicates.py) misses: rows of a later split (eval, test) that are nearly a row
of an earlier one, counted in the log with a warning and listed in OUT/near_duplicates.csv (split, row,
other_split, other_row, how, distance).

- text: equal once case, punctuation and whitespace are dropped ("Hello, World!" and "hello world", "U.S." and
  "US");
- images: a 64-bit difference hash (8x9 grey thumbnail, is each pixel brighter than its left neighbour?) within
  HASH_BITS bits: the same picture resized, re-encoded or slightly retouched. PIL and numpy only.

Rows the exact check already lists are left out here; audio is compared exactly only.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Image as ImageFeature

from tunesuite.config.resolve import RunConfig
from tunesuite.files import write_text_atomic
from tunesuite.train.duplicates import IMAGE_SUFFIXES, ORDER, base_of, find, input_columns, run_splits

log = logging.getLogger("tunesuite")
FILE = "near_duplicates.csv"
HASH_BITS = 6  # at most this many of the 64 hash bits differ: the same picture (unrelated ones differ in ~32)
_NOT_WORD = re.compile(r"[\W_]+")
Pair = tuple[str, int, str, int, str, int]


def text_key(text: str) -> str:
    """Case, punctuation and whitespace dropped: the letters and digits in order ("U.S." and "US" alike)."""
    return _NOT_WORD.sub("", text.casefold())


def image_hash(image: Any) -> np.ndarray:
    """The difference hash of a PIL image: 64 bits as 8 bytes."""
    from PIL import Image

    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    return np.packbits((grey[:, 1:] > grey[:, :-1]).ravel())


def _open_image(value: Any, base: Path) -> Any | None:
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, Image.Image):
        return value
    source = value
    if isinstance(value, dict):
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    elif isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base / value
        try:
            source = path if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() else None
        except OSError:  # a text too long to be a file name
            source = None
    if source is None:
        return None
    try:
        with Image.open(source) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def split_features(split: Any, columns: list[str], base: Path) -> tuple[list[str] | None, np.ndarray | None]:
    """(text keys, or None when the inputs are not text; image hashes (rows x 8 bytes), or None)."""
    split = split.select_columns(columns)
    images = [c for c in columns if isinstance(split.features[c], ImageFeature)]
    for column in images:
        split = split.cast_column(column, ImageFeature(decode=False))
    first = split[0][columns[0]] if len(split) else None
    if not images and isinstance(first, str) and _open_image(first, base) is None:
        return [" | ".join(text_key(str(row[c])) for c in columns) for row in split], None
    column = images[0] if images else columns[0]
    if not images and not isinstance(first, str):
        return None, None  # audio or other values: the exact check covers them
    hashes = []
    for row in split:
        image = _open_image(row[column], base)
        hashes.append(image_hash(image) if image is not None else np.full(8, -1, dtype=np.int16))
    return None, np.array(hashes, dtype=np.int16)


def near_images(hashes: dict[str, np.ndarray], within: int = HASH_BITS) -> list[Pair]:
    """(split, row, other split, other row, "image hash", bits apart): each row of a later split whose hash lies
    within `within` bits of a row of an earlier split (the closest; an unreadable image matches nothing)."""
    found: list[Pair] = []
    names = [s for s in ORDER if s in hashes]
    for i, split in enumerate(names):
        earlier = [(other, row) for other in names[:i] for row in range(len(hashes[other]))]
        if not earlier or not len(hashes[split]):
            continue
        pool = np.concatenate([hashes[other] for other in names[:i]])
        pool_bits = np.unpackbits(pool.clip(0).astype(np.uint8), axis=1)
        bad_pool = (pool < 0).any(1)
        for start in range(0, len(hashes[split]), 256):  # 256 x pool bit matrices: memory stays small
            chunk = hashes[split][start:start + 256]
            bits = np.unpackbits(chunk.clip(0).astype(np.uint8), axis=1)
            apart = (bits[:, None, :] != pool_bits[None, :, :]).sum(-1)
            apart[:, bad_pool] = 65
            for offset, row in enumerate(apart):
                best = int(row.argmin())
                if row[best] <= within and not (chunk[offset] < 0).any():
                    found.append((split, start + offset, *earlier[best], "image hash", int(row[best])))
    return found


def near_texts(keys: dict[str, list[str]]) -> list[Pair]:
    return [(*pair, "text", 0) for pair in find(keys)]


def check(splits: dict[str, Any], columns: dict[str, list[str]], base: Path, out: Path,
          exact: list[tuple[str, int, str, int]]) -> list[Pair]:
    """Near-duplicates across `splits` not already in `exact`; warn and write OUT/near_duplicates.csv when any."""
    texts, hashes = {}, {}
    for name, split in splits.items():
        keys, image_hashes = split_features(split, columns[name], base)
        if keys is not None:
            texts[name] = keys
        if image_hashes is not None:
            hashes[name] = image_hashes
    known = {(s, r) for s, r, _, _ in exact}
    found = [p for p in [*near_texts(texts), *near_images(hashes)] if (p[0], p[1]) not in known]
    (out / FILE).unlink(missing_ok=True)  # an earlier run's list never outlives its data
    if not found:
        return []
    counts: dict[tuple[str, str, str], int] = {}
    for split, _, other, _, how, _ in found:
        counts[(split, other, how)] = counts.get((split, other, how), 0) + 1
    said = ", ".join(f"{n:,} {s} rows of {len(splits[s]):,} nearly in {o} ({how})" for (s, o, how), n in counts.items())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["split", "row", "other_split", "other_row", "how", "distance"])
    writer.writerows(found)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / FILE, buffer.getvalue())
    log.warning("near-duplicates across splits (leakage: scores on them are not on unseen data): %s; listed in %s",
                said, out / FILE)
    return found


def check_run(raw: Any, cfg: RunConfig, out: Path, exact: list[tuple[str, int, str, int]]) -> list[Pair]:
    """The check on a run's splits (the recipe calls it after the exact one, whose rows it leaves out)."""
    splits = run_splits(raw, cfg)
    if len(splits) < 2:
        return []
    return check(splits, {name: input_columns(split, cfg) for name, split in splits.items()}, base_of(cfg), out, exact)
