"""Load train/eval/test splits from the Hub or local files, check columns, build label maps."""

from __future__ import annotations

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
    return datasets.load_dataset(FILE_BUILDERS[suffixes.pop()], data_files=files, cache_dir=cache_dir, **extra)


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
            raise TunesuiteError(f"the {key} split is empty; check --{key}-split and --max-*-samples")
    return splits


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


def label_names(splits: dict[str, Dataset], label_column: str, problem_type: str) -> list[str]:
    """Class names in id order: from a ClassLabel feature, else the sorted values seen in train."""
    train = splits["train"]
    feature = train.features[label_column]
    inner = getattr(feature, "feature", feature)
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
