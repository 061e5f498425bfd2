"""The repeats of a comparison: seeds, and k-fold cross-validation over train + validation (scikit-learn's KFold),
each fold written once as a dataset folder (train / validation, plus the untouched test split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesuite import data
from tunesuite.choose.compare.runs import Repeat
from tunesuite.errors import TunesuiteError


def repeats(user: dict[str, Any], out: Path, folds: int | None, seeds: int | None) -> list[Repeat]:
    """Every (fold, seed) a candidate runs: seeds 0..N-1 (the user's --seed first), on each fold or the splits."""
    if folds is not None and folds < 2:
        raise TunesuiteError(f"--folds {folds}: k-fold needs at least 2 folds (or leave --folds out)")
    if seeds is not None and seeds < 1:
        raise TunesuiteError(f"--seeds {seeds}: give 1 or more repeats")
    first = int(user.get("seed", 42))
    seed_list = [first + i for i in range(seeds or 1)]
    if not folds:
        return [Repeat(f"seed-{s}", s, {}) for s in seed_list]
    paths = write_folds(user, out / "folds", folds, first)
    return [Repeat(f"fold-{i}-seed-{s}", s, {"dataset": str(path), "train_split": "train",
                                              "eval_split": "validation", "test_split": "test"})
            for i, path in enumerate(paths) for s in seed_list]


def split_indices(rows: int, k: int, seed: int) -> list[tuple[Any, Any]]:
    """(kept, held) row indices of each of k folds of `rows` rows: the split write_folds writes (audit reads it)."""
    from sklearn.model_selection import KFold

    return list(KFold(k, shuffle=True, random_state=seed).split(range(rows)))


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a text cell too long to be a file name
        return False


def absolute_paths(split: Any, dataset: Path) -> Any:
    """Relative file paths (an image or audio manifest's) made absolute: the fold folders live elsewhere, so
    they could not be read relative to them."""
    base = dataset if dataset.is_dir() else dataset.parent
    for column, feature in split.features.items():
        text = getattr(feature, "dtype", None) in ("string", "large_string")
        first = split[0][column] if text and len(split) else None
        if not first or Path(first).is_absolute() or not _is_file(base / first):
            continue
        split = split.map(lambda v, c=column: {c: v if not v or Path(v).is_absolute() else str(base / v)},
                          input_columns=column)
    return split


def write_folds(user: dict[str, Any], root: Path, k: int, seed: int, with_test: bool = True) -> list[Path]:
    """k folders of train / validation (+ test unless with_test is False), reused when a resumed comparison finds
    them; the pool is train followed by validation."""
    from datasets import DatasetDict, concatenate_datasets

    try:
        import sklearn  # noqa: F401 (split_indices uses its KFold)
    except ImportError:
        raise TunesuiteError("--folds needs scikit-learn: pip install scikit-learn (or use --seeds N)") from None

    paths = [root / f"fold-{i}" for i in range(k)]
    if all((p / "dataset_dict.json").is_file() for p in paths):
        return paths
    raw = data.load_raw(user["dataset"], user.get("dataset_config"), user.get("cache_dir"))
    train, evaluation = user.get("train_split", "train"), user.get("eval_split", "validation")
    test = user.get("test_split", "test")
    if train not in raw:
        raise TunesuiteError(f"--folds: the dataset has no split {train!r} (has: {', '.join(raw)}); set --train-split")
    pool = concatenate_datasets([raw[train], *([raw[evaluation]] if evaluation in raw else [])])
    pool = absolute_paths(pool, Path(user["dataset"]).expanduser())
    if len(pool) < k:
        raise TunesuiteError(f"--folds {k}: train + validation hold only {len(pool)} rows; use fewer folds")
    for path, (kept, held) in zip(paths, split_indices(len(pool), k, seed), strict=True):
        splits = {"train": pool.select(kept), "validation": pool.select(held)}
        if with_test and test in raw and test not in (train, evaluation):
            splits["test"] = raw[test]
        DatasetDict(splits).save_to_disk(str(path))
    return paths
