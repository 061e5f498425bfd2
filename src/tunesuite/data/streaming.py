"""--streaming: the training split as a datasets IterableDataset (Hub datasets, large local files), shuffled in a
buffer and turned into model inputs on the fly by the task (in the dataloader workers); a bounded sample of rows
read up front gives the task its label names or vocabulary, and the eval / test splits their rows."""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any

import datasets
from datasets import Audio, Dataset, DatasetDict, Image, IterableDataset, IterableDatasetDict

from tunesuite.data.loading import builder_groups, table_files
from tunesuite.errors import TunesuiteError

log = logging.getLogger("tunesuite")
HOLDOUT_FRACTION = 0.1  # the most of a stream of known size held out for evaluation (no eval split)


def check(cfg: Any) -> None:
    """--streaming needs --max-steps: a stream has no length, so epochs cannot be counted."""
    if cfg.data.streaming and cfg.training.max_steps <= 0:
        raise TunesuiteError("--streaming needs --max-steps N (a stream has no length to count epochs by); "
                             "add e.g. --max-steps 10000")
    if cfg.data.streaming and cfg.data.streaming_sample < 1:
        raise TunesuiteError(f"--streaming-sample must be at least 1 (got {cfg.data.streaming_sample})")


def open_stream(name: str, config_name: str | None, cache_dir: str | None, shards: int) -> IterableDatasetDict:
    """Every split of a Hub dataset or local file / folder as a stream (nothing is converted up front)."""
    path = Path(name).expanduser()
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
            saved = datasets.load_from_disk(str(path))  # memory-mapped Arrow: shard it for the workers
            saved = saved if isinstance(saved, DatasetDict) else DatasetDict(train=saved)
            return IterableDatasetDict({k: v.to_iterable_dataset(num_shards=min(shards, max(1, len(v))))
                                        for k, v in saved.items()})
        files = {"train": str(path)} if path.is_file() else table_files(path) if path.is_dir() else {}
        if files:  # each kind of table file by its own builder
            loaded = IterableDatasetDict()
            for builder, options, group in builder_groups(files):
                loaded.update(datasets.load_dataset(builder, data_files=group, cache_dir=cache_dir, streaming=True,
                                                    **options))
        elif path.exists():  # imagefolder / audiofolder layouts
            loaded = datasets.load_dataset(str(path), cache_dir=cache_dir, streaming=True)
        else:
            loaded = datasets.load_dataset(name, config_name, cache_dir=cache_dir, streaming=True)
    except Exception as e:  # datasets raises many types; all mean "could not stream this"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TunesuiteError(f"could not stream dataset {name!r}: {first} (check the name or path; --streaming reads "
                             "Hub datasets, .csv/.tsv/.json/.jsonl/.parquet files, image/audio folders)") from None
    return loaded if isinstance(loaded, IterableDatasetDict) else IterableDatasetDict(train=loaded)


def undecoded(stream: IterableDataset) -> IterableDataset:
    """Image and audio columns as bytes/paths: the tasks decode them (PIL, soundfile), naming bad files."""
    for column, feature in (stream.features or {}).items():
        if isinstance(feature, (Image, Audio)):
            stream = stream.cast_column(column, type(feature)(decode=False))
    return stream


def _rows(stream: IterableDataset, n: int) -> Dataset:
    rows = list(stream.take(n))
    return Dataset.from_list(rows, features=stream.features) if rows else Dataset.from_dict({})


def _known_rows(args: Any, stream: IterableDataset, enough: int) -> int | None:
    """The training split's row count when it is cheap to know, counted no further than `enough`: lines of a local
    CSV / TSV (less the header) or JSON Lines file, a Parquet file's metadata, a saved dataset's length, a Hub
    split's info. None when unknown (a JSON document, an image / audio folder, a Hub dataset without split info)."""
    path = Path(args.dataset).expanduser()
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
            saved = datasets.load_from_disk(str(path))
            return len(saved[args.train_split] if isinstance(saved, DatasetDict) else saved)
        file = path if path.is_file() else table_files(path).get(args.train_split) if path.is_dir() else None
        if file is None:
            splits = getattr(stream.info, "splits", None) or {}
            info = splits.get(args.train_split)
            return info.num_examples if info is not None and info.num_examples else None
        suffix = Path(file).suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(file).metadata.num_rows
        if suffix in (".csv", ".tsv", ".jsonl"):
            header = suffix != ".jsonl"
            with open(file, "rb") as f:
                return sum(1 for _ in itertools.islice((line for line in f if line.strip()), enough + header)) - header
    except (OSError, ValueError, KeyError):
        pass
    return None


def _holdout(cfg: Any, train: IterableDataset, bound: int) -> int:
    """Rows held out of the training stream for evaluation when the dataset has no eval split: none when
    evaluation is off (--eval-strategy no) or --validation-split-percentage is 0; else `bound`, but never more
    than HOLDOUT_FRACTION of a stream whose size is known."""
    if cfg.data.validation_split_percentage <= 0 or str(getattr(cfg.training.eval_strategy, "value",
                                                               cfg.training.eval_strategy)) == "no":
        return 0
    rows = _known_rows(cfg.data, train, math.ceil(bound / HOLDOUT_FRACTION))
    if rows is None:
        return bound
    return min(bound, int(rows * HOLDOUT_FRACTION)) if rows > 1 else 0


def sample_and_stream(cfg: Any, shards: int = 1) -> tuple[DatasetDict, IterableDataset]:
    """(the bounded rows the task prepares as usual, the training stream). Without an eval split, while
    evaluation is on, the first rows of the stream are held out for evaluation (_holdout says how many)."""
    args = cfg.data
    streams = open_stream(args.dataset, args.dataset_config, cfg.model.cache_dir, shards)
    if args.train_split not in streams:
        raise TunesuiteError(f"dataset has no split {args.train_split!r} (has: {', '.join(streams)}); set "
                             "--train-split")
    streams = IterableDatasetDict({k: undecoded(v) for k, v in streams.items()})
    train, bound, held = streams[args.train_split], args.max_eval_samples or args.streaming_sample, 0
    sample = {}
    if args.eval_split in streams:
        sample[args.eval_split] = _rows(streams[args.eval_split], bound)
    elif held := _holdout(cfg, train, bound):
        sample[args.eval_split] = _rows(train, held)
        train = train.skip(held)
        log.info("no %r split: held out the first %d streamed rows for evaluation", args.eval_split, held)
    else:
        log.info("no %r split and no evaluation (--eval-strategy no or --validation-split-percentage 0): every "
                 "streamed row trains", args.eval_split)
    if args.test_split in streams and args.test_split not in (args.train_split, args.eval_split):
        sample[args.test_split] = _rows(streams[args.test_split], bound)
    if args.max_train_samples is not None:
        train = train.take(args.max_train_samples)
    if args.shuffle_buffer_size > 0:  # shuffles the order of the shards (files) too
        train = train.shuffle(seed=cfg.training.seed, buffer_size=args.shuffle_buffer_size)
    # the first rows of the shuffled stream: an image folder's files come in class order, its shuffle does not
    sample = {args.train_split: _rows(train, args.streaming_sample), **sample}
    if len(sample[args.train_split]) == 0:
        why = f" after the first {held} were held out for evaluation" if held else ""
        raise TunesuiteError(f"the streamed {args.train_split!r} split of {args.dataset} has no rows to train on{why}; "
                             + ("give an eval split (--eval-split), hold out fewer (--max-eval-samples N) or none "
                                "(--validation-split-percentage 0)" if held else "check --train-split and "
                                "--max-train-samples"))
    log.info("streaming the %r split (shuffle buffer %d rows, %d shard(s)); %d rows read up front for labels and "
             "evaluation", args.train_split, args.shuffle_buffer_size, train.num_shards,
             sum(len(s) for s in sample.values()))
    # the task's usual checks and carving see the bounded splits as they are: nothing more to hold out
    return DatasetDict(sample), train


def prepare(task: Any, cfg: Any, processor: Any) -> Any:
    """The task's Prepared for a --streaming run: its usual preparation of the bounded rows, with the training
    split swapped for the stream, mapped to model inputs row by row by the task's DataSpec.stream."""
    import dataclasses

    check(cfg)
    if task.data.stream is None:
        raise TunesuiteError(f"--streaming: the {task.name} task cannot stream its data; drop --streaming")
    sample, train = sample_and_stream(cfg, max(1, cfg.training.dataloader_num_workers))
    if cfg.data.eval_split not in sample:  # nothing held out: the task must not carve eval rows that also train
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, validation_split_percentage=0))
    prepared = task.data.preprocess(sample, processor, cfg)
    return dataclasses.replace(prepared, train=task.data.stream(train, prepared, cfg, sample[cfg.data.train_split]))
