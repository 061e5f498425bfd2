"""`tunesuite compare` / `tunesuite.compare(...)`: every candidate mode on the same splits within one time budget,
as one table and one plot (main metric, trainable %, wall time, peak memory, the estimate's error), winner marked.

    runs.py   the runs (settings per candidate, the budget's shares, failures as rows, resume)
    folds.py  the repeats (--seeds N, --folds K)
    table.py  mean +- standard deviation, winner or tie, compare.md / compare.json / compare.png
    curve.py  --shots 0 8 32 all: the data-efficiency curve (metric against labels per class, per mode)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tunesuite.choose.compare import curve, folds, runs, table
from tunesuite.errors import TunesuiteError
from tunesuite.tasks import get_task

__all__ = ["compare", "compare_values"]
log = logging.getLogger("tunesuite")


def compare_values(task_name: str, user: dict[str, Any], modes: list[str] | None = None, budget: str | None = None,
                   folds_k: int | None = None, seeds: int | None = None, output_dir: str | None = None,
                   shots: list[str] | None = None) -> dict[str, Any]:
    """The comparison for typed flag values `user` (every run's flags; --model and --dataset required)."""
    from tunesuite.logs import setup_logging
    from tunesuite.train.timing import parse_duration

    setup_logging()
    task = get_task(task_name)
    if not user.get("model") or not user.get("dataset"):
        raise TunesuiteError("compare needs --model and --dataset")
    names = list(modes or runs.default_candidates())
    known = runs.candidate_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise TunesuiteError(f"unknown mode {unknown[0]!r} for compare; choose from {', '.join(known)}")
    budget_s = parse_duration(budget) if budget else None
    out = Path(output_dir or f"runs/compare-{task.name}")
    out.mkdir(parents=True, exist_ok=True)
    repeats = folds.repeats(user, out, folds_k, seeds)
    if shots:  # the data-efficiency curve (curve.py)
        if folds_k:
            raise TunesuiteError("--shots draws K rows per class from the training split: use --seeds, not --folds")
        rows = curve.run_curve(task, names, repeats, user, out, budget_s, curve.parse_shots(shots))
        result = curve.write(task, rows, out, user)
        log.info("compare: %s\n%s", result["verdict"], result["table"])
        return {**result, "output_dir": str(out)}
    rows = runs.run_all(task, names, repeats, user, out, budget_s)
    result = table.write(task, rows, out)
    log.info("compare: %s (the table: %s)", result["verdict"], out / "compare.md")
    return {**result, "output_dir": str(out)}


def compare(task: str, model: str, dataset: str, modes: list[str] | None = None, budget: str | None = None,
            folds: int | None = None, seeds: int | None = None, output_dir: str | None = None,
            shots: list[int | str] | None = None, **flags: Any) -> dict[str, Any]:
    """Compare modes on one model and dataset; any training flag as a keyword applies to every run. `shots`
    (e.g. [0, 8, 32, "all"]): the data-efficiency curve, metric against labels per class."""
    from tunesuite.config.parse import keyword_values

    user = keyword_values(get_task(task), {"model": model, "dataset": dataset, **flags})
    return compare_values(task, user, modes, budget, folds, seeds, output_dir,
                          [str(k) for k in shots] if shots else None)
