"""Load train/eval/test splits from the Hub or local files, check columns, build label maps."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Sequence

from .errors import TunesuiteError

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
    builders = {FILE_BUILDERS[Path(f).suffix.lower()] for f in split_files.values()}
    if len(builders) == 1:  # a folder of train.csv / validation.csv / test.csv (or .tsv) ...
        return _load_files(split_files, cache_dir)
    return datasets.load_dataset(str(path), cache_dir=cache_dir)  # imagefolder / audiofolder / mixed


def load_raw(name: str, config_name: str | None = None, cache_dir: str | None = None) -> DatasetDict:
    """A DatasetDict from a Hub dataset name or a local directory/file."""
    path = Path(name).expanduser()
    try:
        if path.exists():
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


def find_column(split: Dataset, wanted: str | None, candidates: list[str], flag: str, what: str) -> str:
    """`wanted` if given, else the first candidate name the split has; none: an error naming the flag to set."""
    if wanted:
        return wanted
    found = next((c for c in candidates if c in split.column_names), None)
    if found is None:
        raise TunesuiteError(f"no {what} column found (columns: {', '.join(split.column_names)}); set {flag}")
    return found


def manifest_dir(dataset: str) -> Path | None:
    """The folder that relative file paths in a local dataset resolve against: the folder itself, or the
    manifest file's folder; None for a Hub dataset."""
    path = Path(dataset).expanduser()
    return path.resolve() if path.is_dir() else path.resolve().parent if path.is_file() else None


def require_columns(split: Dataset, columns: list[str], split_name: str, flag: str) -> None:
    for column in columns:
        if column not in split.column_names:
            raise TunesuiteError(
                f"column {column!r} not found in the {split_name} split (columns: "
                f"{', '.join(split.column_names)}); set {flag}"
            )


def infer_problem_type(split: Dataset, label_column: str) -> str:
    feature = split.features[label_column]
    if isinstance(feature, (Sequence, list)):
        return "multi_label_classification"
    values = split[label_column][:1000]
    if any(isinstance(v, (list, tuple)) for v in values):
        return "multi_label_classification"
    if any(isinstance(v, float) and not float(v).is_integer() for v in values):
        return "regression"
    return "single_label_classification"


def label_names(splits: dict[str, Dataset], label_column: str, problem_type: str, source: str = "the dataset"
                ) -> list[str]:
    """Class names in id order: from a ClassLabel feature, else the sorted values seen in train.

    A single-label train split needs two classes or more (`source` names the dataset in that error)."""
    train = splits["train"]
    feature = train.features[label_column]
    inner = getattr(feature, "feature", feature)
    if problem_type == "single_label_classification":
        seen = sorted({v for v in train[label_column] if v is not None}, key=str)
        if len(seen) == 1:
            only = inner.int2str(seen[0]) if isinstance(inner, ClassLabel) else str(seen[0])
            raise TunesuiteError(f"the train split of {source} holds one class ({only!r}) in column "
                                 f"{label_column!r}; a classifier needs at least two: add examples of other "
                                 "classes, or check --label-column and --train-split")
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    if problem_type == "multi_label_classification":
        names = sorted({str(v) for row in train[label_column] for v in (row or [])})
    else:
        names = sorted({str(v) for v in train[label_column] if v is not None})
    seen = set(names)
    for key in ("eval", "test"):
        if key not in splits:
            continue
        values = splits[key][label_column]
        flat = [v for row in values for v in (row or [])] if problem_type.startswith("multi") else values
        unseen = sorted({str(v) for v in flat if v is not None} - seen)
        if unseen:
            raise TunesuiteError(
                f"label {unseen[0]!r} in the {key} split never occurs in train "
                f"({len(unseen)} such labels); add training examples or drop those rows"
            )
    if not names:
        raise TunesuiteError(f"column {label_column!r} of the train split holds no labels")
    return names


def label_maps(names: list[str]) -> dict[str, Any]:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)},
            "num_labels": len(names)}
