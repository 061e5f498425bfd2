"""The runs of a comparison: each candidate (a registered mode, or a recipe of one) on the same splits, with its
own learning rate and epochs (the registry's, as choose/auto.py reads them), under a share of the time budget, each
in its own folder.

A run that fails or is refused becomes a row that says why. A finished run leaves compare_run.json in its
folder, so a comparison run again skips it (resume); an unfinished one starts over.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tunesuite import registry
from tunesuite.choose import auto
from tunesuite.config import resolve as config
from tunesuite.errors import TunesuiteError
from tunesuite.train import timing
from tunesuite.train.recipe import finetune_config

log = logging.getLogger("tunesuite")
DONE = "compare_run.json"
# Settings a comparison sets unless the user does: no checkpoints (each run keeps its final model).
COMPARE_DEFAULTS = {"save_strategy": "no", "disable_tqdm": True}


@dataclass(frozen=True)
class Repeat:
    """One of the repeats every candidate runs: a seed, and a fold's data (or the user's own splits)."""

    name: str  # folder name: seed-0, fold-1-seed-0
    seed: int
    data: dict[str, Any]  # dataset / split flags of this repeat


def candidate_names() -> list[str]:
    """Every registered mode and recipe: what `--modes` may name."""
    return [*registry.modes(), *registry.recipes()]


def default_candidates() -> list[str]:
    """What compare runs without `--modes`: the registered modes and recipes that ask to be compared."""
    entries = [*registry.in_registration_order(registry.modes()), *registry.in_registration_order(registry.recipes())]
    return [e.name for e in entries if e.compared]


def settings(name: str, facts: auto.Facts, user: dict[str, Any]) -> dict[str, Any]:
    """The flags a candidate runs with: its mode, learning rate and epochs (auto's rule), the user's flags on top."""
    if name not in candidate_names():
        raise TunesuiteError(f"unknown mode {name!r} for compare; choose from {', '.join(candidate_names())}")
    own = auto.settings(name, facts, user)
    mode = own["mode"]
    return {**COMPARE_DEFAULTS, **own, **{k: v for k, v in user.items() if k != "mode" and k not in _foreign(mode)}}


def _foreign(mode: str) -> set[str]:
    """Flags of the other modes (a user's --lora-r applies to the LoRA run only)."""
    own = registry.modes()[mode].args
    names = {f.name for m in registry.modes().values() if m.args is not None and m.args is not own
             for f in fields(m.args)}
    return names - ({f.name for f in fields(own)} if own else set())


def run_one(task: registry.Task, options: dict[str, Any], out: Path) -> dict[str, Any]:
    """One run in `out`: its row (status, metrics, wall time, peak memory). Finished before: read, not rerun."""
    done = out / DONE
    if done.is_file():
        row = json.loads(done.read_text())
        log.info("compare: %s finished before; skipped (resume)", out)
        return {**row, "resumed": True}
    if out.exists():
        shutil.rmtree(out)  # an interrupted run: start it over
    start = time.perf_counter()
    timing.reset_peak_memory()
    try:
        cfg = config.resolve(task, {**options, "output_dir": str(out)})
        metrics = finetune_config(task, cfg)
        status = "ok"
    except TunesuiteError as e:
        metrics, status = {}, f"refused: {' '.join(str(e).split())}"
    except Exception as e:  # a failing mode is a row of the comparison, never its end
        log.debug("%s", traceback.format_exc())
        metrics, status = {}, f"failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
    row = {"status": status, "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
           "wall_s": time.perf_counter() - start, "peak_memory_mb": timing.peak_memory_mb(), "folder": str(out)}
    if status == "ok":
        done.write_text(json.dumps(row, indent=2))
    else:
        log.info("compare: %s %s", out.name, status)
    return row


def run_all(task: registry.Task, names: list[str], repeats: list[Repeat], user: dict[str, Any], out: Path,
            budget_s: float | None) -> list[dict[str, Any]]:
    """Every candidate x repeat; each run gets an equal share of what is left of the budget."""
    facts = auto.facts(task, user)
    log.info("compare: %s; %d candidates x %d repeats", facts.describe(), len(names), len(repeats))
    rows, start = [], time.perf_counter()
    jobs = [(name, repeat) for name in names for repeat in repeats]
    for i, (name, repeat) in enumerate(jobs):
        row: dict[str, Any] = {"candidate": name, "repeat": repeat.name}
        try:
            options = {**settings(name, facts, user), **repeat.data, "seed": repeat.seed}
        except TunesuiteError as e:
            rows.append({**row, "status": f"refused: {e}", "metrics": {}, "folder": ""})
            continue
        if budget_s is not None:
            left = budget_s - (time.perf_counter() - start)
            if left <= 0 and not (out / name / repeat.name / DONE).is_file():
                rows.append({**row, "status": "skipped: the time budget was spent", "metrics": {}, "folder": ""})
                continue
            options["time_budget"] = f"{max(left / (len(jobs) - i), 1):.0f}s"
        log.info("compare: [%d/%d] %s %s (learning rate %g, %s epochs)", i + 1, len(jobs), name, repeat.name,
                 options["learning_rate"], options.get("num_train_epochs"))
        rows.append({**row, **run_one(task, options, out / name / repeat.name)})
    return rows
