"""Load train/eval/test splits from the Hub or local files, with errors that name the file."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict

from ..errors import TunesuiteError
from .audio_columns import class_folders

log = logging.getLogger(__name__)

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _load_files(files: dict[str, str], cache_dir: str | None) -> DatasetDict:
    """Split name -> file, all of one builder; .tsv files are read with tabs (mixed .csv/.tsv: one by one)."""
    suffixes = {Path(f).suffix.lower() for f in files.values()}
    if suffixes == {".csv", ".tsv"}:
        return DatasetDict({k: _load_files({k: f}, cache_dir)[k] for k, f in files.items()})
    extra = {"delimiter": "\t"} if suffixes == {".tsv"} else {}
    try:
        return datasets.load_dataset(FILE_BUILDERS[suffixes.pop()], data_files=files, cache_dir=cache_dir, **extra)
    except Exception as e:
        problem = _file_problem(files, e)
        if problem:
            raise TunesuiteError(problem) from None
        raise


def _file_problem(files: dict[str, str], error: BaseException) -> str | None:
    """What is wrong with a local data file that datasets failed on, naming it: not UTF-8, or no rows."""
    chain, cause = [], error
    while cause is not None and len(chain) < 20:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text_files = [f for f in files.values() if Path(f).suffix.lower() != ".parquet"]
    if any(isinstance(c, UnicodeDecodeError) for c in chain):
        for file in text_files:
            raw = Path(file).read_bytes()
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                line = raw.count(b"\n", 0, e.start) + 1
                return (f"{file} is not UTF-8 text (byte {raw[e.start]:#04x} on line {line}; a latin-1 or Windows "
                        "export?): re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8")
    for split, file in files.items():
        if file in text_files:
            with open(file, errors="replace") as f:
                lines = list(itertools.islice((line for line in f if line.strip()), 2))
            if len(lines) <= (Path(file).suffix.lower() in (".csv", ".tsv")):  # a csv's first line is its header
                return (f"the {split} split file {file} holds no rows ({'header only' if lines else 'empty'}); "
                        "add data rows, or remove the file")
    return None


def _load_local(path: Path, cache_dir: str | None) -> DatasetDict:
    if path.is_file():
        if path.suffix.lower() not in FILE_BUILDERS:
            raise TunesuiteError(f"{path}: unsupported file type; use one of {', '.join(FILE_BUILDERS)}")
        return _load_files({"train": str(path)}, cache_dir)
    if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
        loaded = datasets.load_from_disk(str(path))
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded)
    split_files: dict[str, str] = {}
    for file in sorted(path.iterdir()):
        if file.suffix.lower() in FILE_BUILDERS and file.stem not in split_files:
            split_files[file.stem] = str(file)
    if set(split_files) == {"metadata"}:  # audiofolder / imagefolder layout: files + one metadata table
        split_files = {"train": split_files["metadata"]}
    if not split_files and (folders := class_folders(path)) is not None:
        return folders  # class sub-folders of audio files
    builders = {FILE_BUILDERS[Path(f).suffix.lower()] for f in split_files.values()}
    if len(builders) == 1:  # a folder of train.csv / validation.csv / test.csv (or .tsv) ...
        return _load_files(split_files, cache_dir)
    return datasets.load_dataset(str(path), cache_dir=cache_dir)  # imagefolder / audiofolder / mixed


@contextlib.contextmanager
def _no_bars() -> Iterator[None]:
    was_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()


def load_raw(name: str, config_name: str | None = None, cache_dir: str | None = None) -> DatasetDict:
    """A DatasetDict from a Hub dataset name or a local directory/file."""
    path = Path(name).expanduser()
    try:
        if path.exists():
            with _no_bars():  # datasets' "Generating train split" bars: seconds, for files already here
                return _load_local(path, cache_dir)
        if any(name.endswith(ext) for ext in FILE_BUILDERS) or name.startswith((".", "/")):
            raise TunesuiteError(f"dataset file {name} does not exist")
        loaded = datasets.load_dataset(name, config_name, cache_dir=cache_dir)
    except TunesuiteError:
        raise
    except Exception as e:  # datasets raises many types; all mean "could not load this"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TunesuiteError(
            f"could not load dataset {name!r}: {first} (check the name or path; offline, pass a local path)"
        ) from None
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded)


def select_splits(raw: DatasetDict, args: Any, seed: int) -> dict[str, Dataset]:
    """Map the user's split names onto train / eval / test, carving eval from train if needed."""
    if args.train_split not in raw:
        raise TunesuiteError(
            f"dataset has no split {args.train_split!r} (has: {', '.join(raw)}); set --train-split"
        )
    splits = {"train": raw[args.train_split]}
    if args.eval_split in raw:
        splits["eval"] = raw[args.eval_split]
    elif args.validation_split_percentage > 0:
        parts = splits["train"].train_test_split(test_size=args.validation_split_percentage / 100, seed=seed)
        splits["train"], splits["eval"] = parts["train"], parts["test"]
        log.info("No %r split: held out %d%% of train for evaluation", args.eval_split,
                 args.validation_split_percentage)
    if args.test_split in raw and args.test_split not in (args.train_split, args.eval_split):
        splits["test"] = raw[args.test_split]
    limits = {"train": args.max_train_samples, "eval": args.max_eval_samples, "test": args.max_eval_samples}
    for key, limit in limits.items():
        if key in splits and limit is not None:
            splits[key] = splits[key].select(range(min(limit, len(splits[key]))))
    for key, split in splits.items():
        if len(split) == 0:
            raise TunesuiteError(f"the {key} split is empty ({split_source(args, key)}); check --{key}-split "
                                 "and --max-*-samples")
    return splits


def split_source(args: Any, key: str) -> str:
    """Where a split (train / eval / test) comes from, for messages: its local file, or the dataset and split."""
    name = {"train": args.train_split, "eval": args.eval_split, "test": args.test_split}[key]
    path = Path(args.dataset).expanduser()
    if path.is_file():
        return str(path)
    if path.is_dir():
        files = [f for f in sorted(path.iterdir()) if f.stem in (name, "metadata") and f.suffix.lower() in
                 FILE_BUILDERS]
        if files or (path / name).is_dir():
            return str(files[0] if files else path / name)
        if key == "eval":  # held out from train (--validation-split-percentage)
            return f"held out from {split_source(args, 'train')}"
        return f"{path}, split {name!r}"
    return f"dataset {args.dataset!r}, split {name!r}"
