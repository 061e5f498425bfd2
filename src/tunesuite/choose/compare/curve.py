"""`compare --shots 0 8 32 all`: the data-efficiency curve. How far does each mode get with no labels, with K labels
per class, with all of them? Zero-shot runs at 0; at each K the no-update few-shot and the trained candidates run on
a seeded draw of K training rows per class (one draw per seed, the same for every mode; validation and test
untouched). Written as curve.md (metric mean +- std per mode and K), curve.json and curve.png (metric against
labels per class, one line per mode).
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

from tunesuite import data, registry
from tunesuite.choose.compare import runs, table
from tunesuite.choose.compare.runs import Repeat
from tunesuite.errors import TunesuiteError
from tunesuite.files import write_text_atomic

ALL = "all"


def parse_shots(values: list[str]) -> list[int | str]:
    """--shots 0 8 32 all -> [0, 8, 32, "all"]; anything else is one error line."""
    found: list[int | str] = []
    for value in values:
        if str(value).lower() == ALL:
            found.append(ALL)
        elif str(value).isdigit():
            found.append(int(value))
        else:
            raise TunesuiteError(f"--shots {value}: give labels per class as whole numbers (0 runs zero-shot) or "
                                 "'all', e.g. --shots 0 8 32 all")
    return list(dict.fromkeys(found))


def _untrained(from_examples: bool) -> str:
    """The registered mode that trains nothing and scores classes from examples (it has a `shots` flag: few-shot)
    or from prompts (zero-shot)."""
    for mode in registry.in_registration_order(registry.modes()):
        flags = set(getattr(mode.args, "__dataclass_fields__", {}))
        if mode.trains_nothing is not None and ("shots" in flags) == from_examples:
            return mode.name
    raise TunesuiteError("--shots: no registered mode scores classes without training")


def write_draw(user: dict[str, Any], root: Path, shots: int, seed: int) -> Path:
    """A dataset folder with `shots` training rows per class (seeded), the other splits as they are."""
    from datasets import DatasetDict

    path = root / f"k{shots}-seed-{seed}"
    if (path / "dataset_dict.json").is_file():
        return path
    raw = data.load_raw(user["dataset"], user.get("dataset_config"), user.get("cache_dir"))
    train, label = user.get("train_split", "train"), user.get("label_column", "label")
    if train not in raw or label not in raw[train].column_names:
        raise TunesuiteError(f"--shots: needs a {train!r} split with a {label!r} column (set --train-split, "
                             "--label-column)")
    by_class: dict[Any, list[int]] = {}
    for i, value in enumerate(raw[train][label]):
        by_class.setdefault(value, []).append(i)
    rng, kept = random.Random(seed), []
    for value in sorted(by_class, key=str):
        rows = by_class[value]
        kept += rng.sample(rows, min(shots, len(rows)))
    DatasetDict({**{k: v for k, v in raw.items() if k != train}, train: raw[train].select(sorted(kept))}
                ).save_to_disk(str(path))
    return path


def run_curve(task: registry.Task, names: list[str], repeats: list[Repeat], user: dict[str, Any], out: Path,
              budget_s: float | None, shots: list[int | str]) -> list[dict[str, Any]]:
    """Every point of the curve: zero-shot at 0; few-shot and the trained candidates at each K and at all."""
    trained = [n for n in names if registry.modes().get(n) is None or registry.modes()[n].trains_nothing is None]
    share = None if budget_s is None else budget_s / len(shots)
    rows: list[dict[str, Any]] = []
    for k in shots:
        point = out / f"shots-{k}"
        if k == 0:
            got = runs.run_all(task, [_untrained(False)], repeats[:1], user, point, share)
        else:
            draws = repeats if k == ALL else [
                Repeat(r.name, r.seed, {"dataset": str(write_draw(user, out / "draws", int(k), r.seed))})
                for r in repeats]
            here = {**user, **draws[0].data, "shots": -1}  # few-shot: every row of the draw
            got = runs.run_all(task, [_untrained(True), *trained], draws, here, point, share)
        rows += [{**row, "shots": k} for row in got]
    return rows


def summarize(task: registry.Task, rows: list[dict[str, Any]], train_rows: int, classes: int
              ) -> list[dict[str, Any]]:
    """One point per (mode, K): the metric's mean and std over its repeats."""
    points = []
    for name, k in dict.fromkeys((r["candidate"], r["shots"]) for r in rows):
        scores = [v for r in rows if r["candidate"] == name and r["shots"] == k and r["status"] == "ok"
                  if (v := table.metric_of(task, r["metrics"])) is not None]
        failed = [r["status"] for r in rows if r["candidate"] == name and r["shots"] == k and r["status"] != "ok"]
        per_class = train_rows / max(classes, 1) if k == ALL else k
        points.append({"mode": name, "shots": k, "labels_per_class": per_class, "runs": len(scores),
                       "mean": statistics.fmean(scores) if scores else None,
                       "std": statistics.stdev(scores) if len(scores) > 1 else None,
                       "status": failed[0] if failed else "ok"})
    return points


def markdown(task: registry.Task, points: list[dict[str, Any]]) -> str:
    """Modes as rows, K as columns: `mean +- std` of the main metric."""
    shots = list(dict.fromkeys(p["shots"] for p in points))
    lines = [f"| mode | {' | '.join(f'{k} per class' if k != ALL else 'all' for k in shots)} |",
             f"|---|{'---|' * len(shots)}"]
    for mode in dict.fromkeys(p["mode"] for p in points):
        cells = []
        for k in shots:
            p = next((p for p in points if p["mode"] == mode and p["shots"] == k), None)
            cells.append("" if p is None else "x " + p["status"].split(":")[0] if p["mean"] is None else
                         f"{p['mean']:.3f}" + (f" +- {p['std']:.3f}" if p["std"] is not None else ""))
        lines.append(f"| {mode} | {' | '.join(cells)} |")
    return "\n".join([f"{task.results.main_metric} against labels per class", "", *lines])


def plot(task: registry.Task, points: list[dict[str, Any]], path: Path) -> None:
    """Metric against labels per class (log axis; 0 drawn as a horizontal line), one line per mode."""
    from tunesuite.tasks.metrics import saved_figure

    with saved_figure(path, (6.5, 4.2), f"{task.results.main_metric} against labels per class") as ax:
        for mode in dict.fromkeys(p["mode"] for p in points):
            mine = [p for p in points if p["mode"] == mode and p["mean"] is not None]
            if mine and all(p["shots"] == 0 for p in mine):
                ax.axhline(mine[0]["mean"], linestyle="--", color="gray", label=f"{mode} (no labels)")
                continue
            xs = [p["labels_per_class"] for p in mine]
            ax.errorbar(xs, [p["mean"] for p in mine], yerr=[p["std"] or 0 for p in mine], marker="o", capsize=3,
                        label=mode)
        ax.set_xscale("log")
        ticks = sorted({p["labels_per_class"] for p in points if p["shots"] != 0})
        ax.set_xticks(ticks, [f"{t:.0f}" + (" (all)" if any(p["shots"] == ALL and p["labels_per_class"] == t
                                                             for p in points) else "") for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("labelled examples per class (log)")
        ax.set_ylabel(task.results.main_metric)
        ax.legend(fontsize=8)


def write(task: registry.Task, rows: list[dict[str, Any]], out: Path, user: dict[str, Any]) -> dict[str, Any]:
    """curve.md, curve.json, curve.png in `out`."""
    raw = data.load_raw(user["dataset"], user.get("dataset_config"), user.get("cache_dir"))
    train = raw[user.get("train_split", "train")]
    classes = len(set(train[user.get("label_column", "label")]))
    points = summarize(task, rows, len(train), classes)
    text = markdown(task, points)
    write_text_atomic(out / "curve.md", text + "\n")
    write_text_atomic(out / "curve.json", json.dumps({"points": points, "runs": rows}, indent=2, default=str))
    plot(task, points, out / "curve.png")
    return {"points": points, "table": text, "verdict": "data-efficiency curve",
            "files": [str(out / f) for f in ("curve.md", "curve.json", "curve.png")]}
