"""Image datasets: find the image column, resolve manifest paths, check every image once before training."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datasets import Dataset
from datasets import Image as ImageFeature

from tunesuite import data
from tunesuite.data import cache_keys, image
from tunesuite.errors import TunesuiteError

log = logging.getLogger("tunesuite")
PROBLEM, ROW = "tunesuite_problem", "tunesuite_row"  # the check's columns, dropped after it
IMAGE_COLUMN_GUESSES = ("image", "img", "path", "file", "file_name", "filename", "image_path")


def image_column(split: Dataset, wanted: str | None) -> str:
    """--image-column, else `image`, the only column of images, or a usual name for a path column."""
    typed = [c for c, f in split.features.items() if isinstance(f, ImageFeature)]
    guesses = ["image"] + (typed if len(typed) == 1 else []) + list(IMAGE_COLUMN_GUESSES)
    return data.find_column(split, wanted, guesses, "--image-column", "image")


def refs(split: Dataset, column: str) -> Iterator[Any]:
    """The column's values (paths, or {"bytes", "path"} dicts) in batches, so memory stays small."""
    for batch in split.select_columns([column]).iter(batch_size=256):
        yield from batch[column]


def single_folder_class(split: Dataset, column: str, label: str, source: str) -> None:
    """An image folder whose train images sit in one class folder gets no labels from datasets (the column is
    missing, or all None): raise the one-class error instead of a confusing missing-label one."""
    if not isinstance(split.features.get(column), ImageFeature) or (
            label in split.column_names and any(v is not None for v in data.values(split, label))):
        return
    paths = (image.resolve_path(ref, None) for ref in refs(split.cast_column(column, ImageFeature(decode=False)),
                                                           column))
    folders = {Path(p).parent.name for p in paths if p}
    if len(folders) == 1:
        raise TunesuiteError(f"the train split of {source} holds one class ({folders.pop()!r}); a classifier needs "
                             "at least two: add a folder of images for each other class")


def readable(split: Dataset, column: str, base: Path | None, key: str, skip: bool, workers: int | None = None
             ) -> Dataset:
    """The split with images left undecoded (PIL decodes them lazily), after checking that each one reads: a
    datasets map over `workers` processes, cached under each file's size and mtime (a second run on the same
    files reads the result; a replaced file is checked again).

    An unreadable image stops the run naming the file, or with `skip` is dropped and counted in the log.
    """
    feature = split.features[column]
    if isinstance(feature, ImageFeature):  # keep bytes/path: we decode with PIL and can name the file on error
        split = split.cast_column(column, ImageFeature(decode=False))
    elif getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise TunesuiteError(f"column {column!r} of the {key} split holds {feature}, not images or image paths; "
                             "set --image-column")

    def problems(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        return {PROBLEM: [image.check(ref, base, f"{key} split, row {i}")
                          for ref, i in zip(batch[column], indices, strict=True)], ROW: indices}

    checked = cache_keys.keyed_map(split, problems, column=column, base=base, what=f"{key} image", settings={},
                                   redo="checking again",
                                   batched=True, with_indices=True, num_proc=workers, desc=f"checking {key} images")
    failed = checked.filter(bool, input_columns=PROBLEM, num_proc=workers)
    bad = list(zip(failed[ROW], failed[PROBLEM], strict=True))
    if len(bad) == len(split):
        raise TunesuiteError(f"column {column!r} of the {key} split holds no readable image ({bad[0][1]}); "
                             "set --image-column, or fix the paths")
    if bad and not skip:
        more = f" ({len(bad)} unreadable images in the {key} split)" if len(bad) > 1 else ""
        raise TunesuiteError(f"{bad[0][1]}; {image.HINT}{more}")
    if bad:
        log.warning("skipped %d unreadable image(s) in the %s split, first: %s", len(bad), key, bad[0][1])
        split = checked.filter(lambda problem: not problem, input_columns=PROBLEM, num_proc=workers)
        return split.remove_columns([PROBLEM, ROW])
    return split


def report_rows(split: Dataset, column: str, label: str, base: Path | None, names: list[str] | None) -> Dataset:
    """What predictions.jsonl shows per example: the image's file (or row) and the reference class name."""
    return Dataset.from_dict({
        "image": [image.resolve_path(ref, base) or f"row {i}" for i, ref in enumerate(refs(split, column))],
        label: [names[v] if names else str(v) for v in split[label]]})
