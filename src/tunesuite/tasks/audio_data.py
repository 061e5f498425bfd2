"""Audio classification data: decode every clip once (mono, resampled), pad the short, crop the long, check labels."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from tunesuite import data
from tunesuite.data import audio, audio_columns, cache_keys
from tunesuite.data.audio_columns import centre_crop
from tunesuite.errors import TunesuiteError

log = logging.getLogger("tunesuite")
TRAIN_KEEP = 4  # training keeps up to this many times --max-duration (the centre) to draw random crops from


def decode_split(split: Dataset, key: str, ctx: dict[str, Any]) -> Dataset:
    """input_values (raw mono samples at the model's rate), labels and path; unreadable rows stop the run or,
    with --skip-bad-files, are dropped and counted. Short clips are padded with silence; clips longer than
    --max-duration are centre-cropped (eval/test) or kept for random crops (train, up to TRAIN_KEEP times)."""
    args, rate, column, label = ctx["args"], ctx["rate"], ctx["audio_column"], ctx["label_column"]
    keep = ctx["max_samples"] * (TRAIN_KEEP if key == "train" else 1) if ctx["max_samples"] else None

    def rows(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {"input_values": [], "labels": [], "path": [], "status": []}
        for i, cell, value in zip(indices, batch[column], batch[label], strict=True):
            status = ""
            samples = audio_columns.load_cell(cell, rate, ctx["base"], f"{key} split, row {i}, column {column!r}",
                                              args.skip_bad_files)
            if samples is None:
                samples, status = np.zeros(ctx["shortest"], np.float32), "drop"
            if not status and len(samples) < ctx["shortest"]:
                samples, status = audio.pad_to(samples, ctx["shortest"]), "padded"
            elif not status and keep and len(samples) > keep:
                samples, status = centre_crop(samples, keep), "cropped"
            out["input_values"].append(samples.astype(np.float32))
            out["labels"].append(ctx["encode"](value))
            out["path"].append(audio.describe(cell, ctx["base"]))
            out["status"].append(status)
        return out

    settings = {"rate": rate, "keep": keep, "shortest": ctx["shortest"], "skip_bad_files": args.skip_bad_files}
    done = cache_keys.keyed_map(split, rows, column=column, base=ctx["base"], what=f"{key} audio", settings=settings,
                                batched=True, with_indices=True, batch_size=32, writer_batch_size=32,
                                remove_columns=split.column_names, num_proc=ctx["workers"],
                                desc=f"decoding {key} audio")
    counts = Counter(done["status"])
    if counts["drop"]:
        log.warning("%s split: skipped %d of %d unreadable clip(s)", key, counts["drop"], len(done))
        done = done.filter(lambda status: status != "drop", input_columns="status")
    if len(done) == 0:
        raise TunesuiteError(f"no readable audio in the {key} split ({ctx['sources'][key]})")
    if counts["padded"]:
        log.info("%s split: padded %d clip(s) shorter than %d samples (%.1f ms, the least the model's feature "
                 "encoder takes) with silence", key, counts["padded"], ctx["shortest"], 1000 * ctx["shortest"] / rate)
    if counts["cropped"]:
        log.info("%s split: cropped %d clip(s) longer than %.1f s to their centre %.1f s%s", key, counts["cropped"],
                 keep / rate, keep / rate, " (random --max-duration crops are drawn from that)" if key == "train"
                 else " (--max-duration)")
    return done.remove_columns(["status"])


def check_classes(train: Dataset, names: list[str], multi: bool, source: str) -> None:
    """Every class needs readable training audio: a class folder whose files were all skipped has none."""
    targets = np.asarray(train["labels"])
    counts = targets.sum(0) if multi else np.bincount(targets, minlength=len(names))
    empty = [n for n, c in zip(names, counts, strict=True) if c == 0]
    if empty:
        raise TunesuiteError(f"class {empty[0]!r} has no (readable) training audio in {source} "
                             f"({len(empty)} such class(es)); add clips, or drop the class")


def check_class_folders(dataset: str, split_name: str, names: list[str]) -> None:
    """A folder of class sub-folders: a sub-folder datasets found no audio in is not silently left out."""
    root = Path(dataset).expanduser()
    root = root / split_name if (root / split_name).is_dir() else root
    if not root.is_dir():
        return
    folders = {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    if set(names) <= folders and folders - set(names):
        lost = sorted(folders - set(names))
        raise TunesuiteError(f"label folder {root / lost[0]} holds no audio file datasets can read (.wav, .flac, "
                             ".mp3, .ogg ...); add clips, or remove the folder")



def label_setup(splits: dict[str, Dataset], label: str, cfg: Any) -> tuple[str, list[str], bool]:
    """(problem type, class names, whether the column is a ClassLabel) from the raw splits."""
    problem = cfg.data.problem_type or data.infer_problem_type(splits["train"], label)
    if problem == "regression":
        raise TunesuiteError(f"column {label!r} holds numbers, not classes; audio classification takes class "
                             "names (set --label-column, or --problem-type)")
    for key, split in splits.items():
        for i, value in enumerate(data.values(split, label)):
            if value is None:
                raise TunesuiteError(f"{key} split, row {i}, column {label!r}: missing label; fill or drop the row")
    names = data.label_names(splits, label, problem, data.split_source(cfg.data, "train"))
    return problem, names, data.is_class_label(splits["train"].features[label])
