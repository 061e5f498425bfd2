"""Columns and labels of loaded splits: find and check columns, infer the problem type, build label maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, Sequence

from tunesuite.errors import TunesuiteError


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


def is_class_label(feature: Any) -> bool:
    """Whether a label feature (or a multi-label sequence of one) is a datasets ClassLabel: its values are ids."""
    return isinstance(getattr(feature, "feature", feature), ClassLabel)


def values(split: Dataset, column: str) -> list[Any]:
    """A column's stored values as one list, read as Arrow in one go (indexing a split by column decodes row by
    row: seconds per pass at 100k rows)."""
    return split.select_columns([column]).with_format("arrow")[column].to_pylist()


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


# A label column whose values are nearly all distinct is an ID, a name or free text, not classes. Real label sets
# repeat even when huge (N classes drawn over N rows: about 63% distinct), so the line is ID_SHARE of the train
# rows; small sets are let through (a few-shot set of 10 rows in 10 classes is plausible) below ID_MIN_ROWS.
ID_SHARE, ID_MIN_ROWS = 0.9, 50


def refuse_id_column(classes: int, rows: int, label_column: str, source: str) -> None:
    """Stop when a single-label column has (nearly) one class per row, naming the column and the flag."""
    if rows >= ID_MIN_ROWS and classes > ID_SHARE * rows:
        raise TunesuiteError(f"column {label_column!r} of {source} has {classes:,} distinct values in {rows:,} "
                             "rows, so it looks like an ID, not a label; pass --label-column with the column "
                             "that holds the classes")


def label_names(splits: dict[str, Dataset], label_column: str, problem_type: str, source: str = "the dataset"
                ) -> list[str]:
    """Class names in id order: from a ClassLabel feature, else the sorted values seen in train.

    A single-label train split needs two classes or more, and not one per row (refuse_id_column); `source`
    names the dataset in those errors."""
    train = splits["train"]
    feature = train.features[label_column]
    inner = getattr(feature, "feature", feature)
    class_label = is_class_label(feature)
    column = values(train, label_column)
    if problem_type == "single_label_classification":
        seen = sorted({v for v in column if v is not None}, key=str)
        if len(seen) == 1:
            only = inner.int2str(seen[0]) if class_label else str(seen[0])
            raise TunesuiteError(f"the train split of {source} holds one class ({only!r}) in column "
                                 f"{label_column!r}; a classifier needs at least two: add examples of other "
                                 "classes, or check --label-column and --train-split")
        if not class_label:  # a ClassLabel's classes are the dataset's own declaration, not a guess
            refuse_id_column(len(seen), len(column), label_column, source)
    if class_label:
        return list(inner.names)
    if problem_type == "multi_label_classification":
        names = sorted({str(v) for row in column for v in (row or [])})
    else:
        names = sorted({str(v) for v in column if v is not None})
    seen = set(names)
    for key in ("eval", "test"):
        if key not in splits:
            continue
        held = values(splits[key], label_column)
        flat = [v for row in held for v in (row or [])] if problem_type.startswith("multi") else held
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
