"""--streaming: the training split as a datasets IterableDataset (Hub datasets, large local files), shuffled in a
buffer and turned into model inputs on the fly by the task (in the dataloader workers); a bounded sample of rows
read up front gives the task its label names or vocabulary, and the eval / test splits their rows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets
from datasets import Audio, Dataset, DatasetDict, Image, IterableDataset, IterableDatasetDict

from ..errors import TunesuiteError
from .loading import FILE_BUILDERS

log = logging.getLogger("tunesuite")


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
        listed = sorted(path.iterdir()) if path.is_dir() else []
        files = {"train": str(path)} if path.is_file() else {
            f.stem: str(f) for f in listed if f.suffix.lower() in FILE_BUILDERS}
        files = {"train": files["metadata"]} if set(files) == {"metadata"} else files
        suffixes = {Path(f).suffix.lower() for f in files.values()}
        if len(suffixes) == 1:
            suffix = suffixes.pop()
            extra = {"delimiter": "\t"} if suffix == ".tsv" else {}
            loaded = datasets.load_dataset(FILE_BUILDERS[suffix], data_files=files, cache_dir=cache_dir,
                                           streaming=True, **extra)
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


def sample_and_stream(cfg: Any, shards: int = 1) -> tuple[DatasetDict, IterableDataset]:
    """(the bounded rows the task prepares as usual, the training stream). Without an eval split, the first
    eval rows are held out of the stream (--validation-split-percentage > 0 asks for a held-out split)."""
    args = cfg.data
    streams = open_stream(args.dataset, args.dataset_config, cfg.model.cache_dir, shards)
    if args.train_split not in streams:
        raise TunesuiteError(f"dataset has no split {args.train_split!r} (has: {', '.join(streams)}); set "
                             "--train-split")
    streams = IterableDatasetDict({k: undecoded(v) for k, v in streams.items()})
    train, bound = streams[args.train_split], args.max_eval_samples or args.streaming_sample
    sample = {}
    if args.eval_split in streams:
        sample[args.eval_split] = _rows(streams[args.eval_split], bound)
    elif args.validation_split_percentage > 0:
        sample[args.eval_split] = _rows(train, bound)
        train = train.skip(bound)
        log.info("no %r split: held out the first %d streamed rows for evaluation", args.eval_split, bound)
    if args.test_split in streams and args.test_split not in (args.train_split, args.eval_split):
        sample[args.test_split] = _rows(streams[args.test_split], bound)
    if args.max_train_samples is not None:
        train = train.take(args.max_train_samples)
    if args.shuffle_buffer_size > 0:  # shuffles the order of the shards (files) too
        train = train.shuffle(seed=cfg.training.seed, buffer_size=args.shuffle_buffer_size)
    # the first rows of the shuffled stream: an image folder's files come in class order, its shuffle does not
    sample = {args.train_split: _rows(train, args.streaming_sample), **sample}
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
    prepared = task.data.preprocess(sample, processor, cfg)
    return dataclasses.replace(prepared, train=task.data.stream(train, prepared, cfg, sample[cfg.data.train_split]))
