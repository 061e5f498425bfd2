"""Probably wrong labels: cleanlab ranks rows by how little their out-of-fold predicted probabilities back the
label they were given (confident learning); we only turn its answer into rows of label_issues.csv.

cleanlab is optional (the `audit` extra): a missing install is one `error:` line saying what to install.
"""

from __future__ import annotations

import csv
import io
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from tunesuite.errors import TunesuiteError
from tunesuite.files import write_text_atomic

FILE = "label_issues.csv"


@dataclass(frozen=True)
class LabelIssue:
    """One row whose label is probably wrong: where it is, what it says, what the folds' models say instead."""

    split: str  # the split the row came from (train or validation)
    row: int  # its index in that split, counted from 0 as the dataset file has it
    input: str  # the text, or the image/audio file
    given: str
    suggested: str
    score: float  # cleanlab's label quality (self-confidence): near 0, the label is probably wrong


def require_cleanlab() -> tuple[Any, Any]:
    """cleanlab's two functions we use, or one line naming the extra to install."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        raise TunesuiteError("finding label errors needs cleanlab: pip install 'tunesuite[audit]'") from None
    return find_label_issues, get_label_quality_scores


def rank(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the rows cleanlab flags, worst first; every row's label quality score)."""
    find_label_issues, get_label_quality_scores = require_cleanlab()
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise TunesuiteError(f"label issues need one probability row per label ({probs.shape} for {len(labels)})")
    probs = np.clip(probs, 1e-12, None)
    probs = probs / probs.sum(1, keepdims=True)
    flagged = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return np.asarray(flagged, dtype=np.int64), get_label_quality_scores(labels, probs)


def issues(probs: np.ndarray, labels: np.ndarray, names: list[str], where: list[tuple[str, int]],
           inputs: list[str]) -> list[LabelIssue]:
    """The flagged rows as LabelIssues, worst first. `where[i]` is row i's (split, row), `inputs[i]` what it shows."""
    flagged, scores = rank(probs, labels)
    return [LabelIssue(where[i][0], where[i][1], inputs[i], names[labels[i]], names[int(np.argmax(probs[i]))],
                       round(float(scores[i]), 6)) for i in flagged]


def write_csv(found: list[LabelIssue], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f.name for f in fields(LabelIssue)])
    writer.writerows(astuple(issue) for issue in found)
    write_text_atomic(path, buffer.getvalue())
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    """label_issues.csv's rows as dictionaries (the report reads them); none when the file is absent."""
    return list(csv.DictReader(path.open(newline=""))) if path.is_file() else []
