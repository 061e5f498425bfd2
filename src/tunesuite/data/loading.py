"""Load train/eval/test splits from the Hub or local files, with errors that name the file."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict

from tunesuite.data.audio_columns import class_folders
from tunesuite.errors import TunesuiteError

log = logging.getLogger(__name__)

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# File names that make a table in a data folder a split (datasets' own split names), and an image / audio
# folder's metadata table: other tables beside them are not data.
SPLIT_STEMS = {"train", "training", "validation", "valid", "val", "dev", "eval", "evaluation", "test", "testing",
               "metadata"}


def builder_groups(files: dict[str, str]) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(builder, its options, split -> file) per kind of table file: .csv and .tsv are both the csv builder,
    with other delimiters, so they are kinds of their own."""
    groups: dict[str, dict[str, str]] = {}
    for split, file in files.items():
        groups.setdefault(Path(file).suffix.lower().replace(".jsonl", ".json"), {})[split] = file
    return [(FILE_BUILDERS[suffix], {"delimiter": "\t"} if suffix == ".tsv" else {}, group)
            for suffix, group in groups.items()]


def _load_files(files: dict[str, str], cache_dir: str | None) -> DatasetDict:
    """Split name -> file; each kind of file (.csv, .tsv, .json/.jsonl, .parquet) read by its own builder."""
    loaded = DatasetDict()
    for builder, options, group in builder_groups(files):
        try:
            loaded.update(datasets.load_dataset(builder, data_files=group, cache_dir=cache_dir, **options))
        except Exception as e:
            problem = _file_problem(group, e)
            if problem:
                raise TunesuiteError(problem) from None
            raise
    return DatasetDict({split: loaded[split] for split in files})


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
    for file in text_files:
        problem = _csv_problem(file) if Path(file).suffix.lower() in (".csv", ".tsv") else _json_problem(file)
        if problem:
            return problem
    return None


def _csv_problem(file: str) -> str | None:
    """The first row with more fields than the header (what pandas stops on), else one with fewer, else a row
    the csv module cannot parse; its line counts from 1, the header's."""
    tab = Path(file).suffix.lower() == ".tsv"
    with open(file, newline="", errors="replace") as f:
        reader, fewer, start = csv.reader(f, delimiter="\t" if tab else ","), None, 1
        try:
            header = next(reader, [])
            start = reader.line_num + 1
            for row in reader:
                if row and len(row) > len(header):
                    return (f"{file} line {start}: {len(row)} fields where the header has {len(header)} (an unquoted "
                            f"{'tab' if tab else 'comma'}?); quote the field or fix the row")
                if row and len(row) < len(header) and fewer is None:
                    fewer = (start, len(row))
                start = reader.line_num + 1
        except csv.Error as e:
            return f"{file} line {start}: cannot be read as {'TSV' if tab else 'CSV'} ({e}); fix the row"
    if fewer:
        return (f"{file} line {fewer[0]}: {fewer[1]} fields where the header has {len(header)}; fill the missing "
                "fields (an empty one still needs its delimiter) or fix the row")
    return None


def _json_problem(file: str) -> str | None:
    """The first line of a JSON Lines file that is not JSON, or where a JSON document stops parsing."""
    text = Path(file).read_text(errors="replace")
    try:
        json.loads(text)
        return None  # one valid document: not a syntax problem
    except ValueError:
        pass
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    try:
        json.loads(lines[first])
    except json.JSONDecodeError:  # not JSON Lines: one document, which breaks where the decoder says
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            return f"{file} line {e.lineno}: not valid JSON ({e.msg}: column {e.colno}); fix the document"
        return None
    for number, line in enumerate(lines[first:], first + 1):
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError as e:
                return f"{file} line {number}: not valid JSON ({e.msg}: column {e.colno}); fix or remove the line"
    return None


def table_files(path: Path) -> dict[str, str]:
    """Split name -> table file (.csv, .tsv, .json, .jsonl, .parquet) of a data folder, read by what it holds.

    When any table is named like a split (train.csv, validation.jsonl, test.tsv ..., or an image / audio
    folder's metadata.csv), those are the data: other tables beside them (notes.json, labels.csv) are left out
    with one log line, so one stray file cannot switch the loader. A folder with no such name: each table is the
    split its name says (--train-split NAME). A lone metadata table is the train split.
    """
    found: dict[str, list[Path]] = {}
    for file in sorted(path.iterdir()):
        if file.is_file() and file.suffix.lower() in FILE_BUILDERS and not file.name.startswith("."):
            found.setdefault(file.stem, []).append(file)
    named = [stem for stem in found if stem.lower() in SPLIT_STEMS]
    if named and len(named) < len(found):
        log.info("data folder %s: left out %s (not named like a split, as %s are)", path,
                 ", ".join(f.name for stem, files in found.items() if stem not in named for f in files),
                 ", ".join(f.name for stem in named for f in found[stem]))
        found = {stem: found[stem] for stem in named}
    for stem, files in found.items():
        if len(files) > 1:
            raise TunesuiteError(f"{path} holds {len(files)} files for the {stem!r} split "
                                 f"({', '.join(f.name for f in files)}); keep one")
    tables = {stem: str(files[0]) for stem, files in found.items()}
    return {"train": tables["metadata"]} if set(tables) == {"metadata"} else tables


def _load_local(path: Path, cache_dir: str | None) -> DatasetDict:
    if path.is_file():
        if path.suffix.lower() not in FILE_BUILDERS:
            raise TunesuiteError(f"{path}: unsupported file type; use one of {', '.join(FILE_BUILDERS)}")
        return _load_files({"train": str(path)}, cache_dir)
    if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
        loaded = datasets.load_from_disk(str(path))
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded)
    tables = table_files(path)
    if tables:  # train.csv / validation.jsonl / test.tsv ..., or a metadata table with the files beside it
        return _load_files(tables, cache_dir)
    if (folders := class_folders(path)) is not None:
        return folders  # class sub-folders of audio files
    return datasets.load_dataset(str(path), cache_dir=cache_dir)  # imagefolder: class sub-folders of images


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
