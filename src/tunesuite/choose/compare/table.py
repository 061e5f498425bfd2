"""A comparison's rows -> one line per candidate (mean +- standard deviation over its repeats), the winner or the
tie, and the files: compare.md (the table), compare.json (every run) and compare.png (the plot)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from tunesuite.registry import Task


def metric_of(task: Task, metrics: dict[str, Any]) -> float | None:
    """The task's main metric of a run: on the test split when there is one, else on the eval split."""
    name = task.results.main_metric
    value = metrics.get(f"test_{name}", metrics.get(f"eval_{name}"))
    return float(value) if isinstance(value, (int, float)) else None


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def settings_of(folders: list[str]) -> str:
    """The settings a candidate's first run used, in a few words (its run_summary.json, config/settings.py)."""
    for folder in folders:
        try:
            found = json.loads((Path(folder) / "run_summary.json").read_text()).get("settings")
        except (OSError, ValueError):
            continue
        if found:
            mode = found.get("mode", "")
            args = mode[mode.index("(") + 1 : -1] if "(" in mode else ""
            return "; ".join([f"lr {found.get('learning rate', '-')}", f"epochs {found.get('epochs', '-')}",
                              f"batch {found.get('effective batch', '-').split(' ')[0]}",
                              f"seed {found.get('seed', '-')}", found.get("precision", "-").split(" ")[0],
                              *([args] if args else [])])
    return "-"


def summarize(task: Task, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per candidate, in the order run."""
    out = []
    for name in dict.fromkeys(r["candidate"] for r in rows):
        mine = [r for r in rows if r["candidate"] == name]
        ok = [r for r in mine if r["status"] == "ok"]
        scores = [v for r in ok if (v := metric_of(task, r["metrics"])) is not None]
        mean, std = _mean_std(scores)
        errors = [r["metrics"]["estimate_error"] for r in ok if "estimate_error" in r["metrics"]]
        first = ok[0]["metrics"] if ok else {}
        out.append({"candidate": name, "runs": len(scores), "mean": mean, "std": std,
                    "trainable_percent": first.get("trainable_percent"),
                    "wall_s": _mean_std([r["wall_s"] for r in ok])[0],
                    "peak_memory_mb": max((r["peak_memory_mb"] for r in ok), default=None),
                    "estimate_train_s": _mean_std([r["metrics"]["estimate_train_s"] for r in ok
                                                   if "estimate_train_s" in r["metrics"]])[0],
                    "actual_train_s": _mean_std([r["metrics"]["actual_train_s"] for r in ok
                                                 if "actual_train_s" in r["metrics"]])[0],
                    "estimate_error": _mean_std(errors)[0],
                    "status": "ok" if len(ok) == len(mine) else next(r["status"] for r in mine if r["status"] != "ok"),
                    "folders": [r["folder"] for r in mine if r.get("folder")],
                    "settings": settings_of([r["folder"] for r in ok if r.get("folder")])})
    return out


def verdict(task: Task, summary: list[dict[str, Any]]) -> tuple[str | None, list[str], str]:
    """(winner or None, candidates tied with the best, one line). A difference within the larger standard
    deviation of the two is a tie; with one run each the noise is unknown, and the line says so."""
    scored = [s for s in summary if s["mean"] is not None]
    if not scored:
        return None, [], "no candidate finished"
    sign = 1 if task.results.greater_is_better else -1
    best = max(scored, key=lambda s: sign * s["mean"])
    repeated = all(s["std"] is not None for s in scored)
    if not repeated:
        return best["candidate"], [], (f"best: {best['candidate']} (one run each: the noise is unknown; "
                                       "repeat with --seeds N or --folds K to tell a win from a tie)")
    tied = [s["candidate"] for s in scored if s is not best and abs(s["mean"] - best["mean"]) <= max(s["std"],
                                                                                                   best["std"])]
    if tied:
        return None, [best["candidate"], *tied], (f"tie: {', '.join([best['candidate'], *tied])} (differences within "
                                                  "one standard deviation of the repeats)")
    return best["candidate"], [], f"winner: {best['candidate']} (ahead by more than the repeats' standard deviation)"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(task: Task, summary: list[dict[str, Any]]) -> str:
    winner, tied, line = verdict(task, summary)
    metric = task.results.main_metric
    lines = [f"| mode | {metric} | runs | trainable % | wall s | peak MiB | estimated s | actual train s | "
             "estimate error | status | settings |", "|---" * 11 + "|"]
    for s in summary:
        mark = " **(winner)**" if s["candidate"] == winner else " (tie)" if s["candidate"] in tied else ""
        score = _fmt(s["mean"], ".4f") + (f" ± {s['std']:.4f}" if s["std"] is not None else "")
        error = "-" if s["estimate_error"] is None else f"{100 * s['estimate_error']:+.0f}%"
        lines.append(f"| {s['candidate']}{mark} | {score} | {s['runs']} | {_fmt(s['trainable_percent'], '.2f')} | "
                     f"{_fmt(s['wall_s'], '.0f')} | {_fmt(s['peak_memory_mb'], '.0f')} | "
                     f"{_fmt(s['estimate_train_s'], '.0f')} | {_fmt(s['actual_train_s'], '.0f')} | {error} | "
                     f"{s['status']} | {s.get('settings', '-')} |")
    return "\n".join([*lines, "", line])


def plot(task: Task, summary: list[dict[str, Any]], path: Path) -> None:
    """Main metric (with its standard deviation) and wall time per candidate; the winner's bar stands out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    winner, tied, line = verdict(task, summary)
    names = [s["candidate"] for s in summary]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(5 + 2.2 * len(names), 4))
    colors = ["tab:green" if n == winner else "tab:olive" if n in tied else "tab:gray" for n in names]
    left.bar(names, [s["mean"] or 0 for s in summary], yerr=[s["std"] or 0 for s in summary], color=colors,
             capsize=4)
    left.set_ylabel(task.results.main_metric)
    middle.bar(names, [s["trainable_percent"] or 0 for s in summary], color=colors)
    middle.set_ylabel("trainable parameters (%)")
    middle.set_yscale("log", nonpositive="clip")  # 0.1 % next to 100 %
    right.bar(names, [s["wall_s"] or 0 for s in summary], color=colors)
    right.set_ylabel("wall time (s)")
    for axis in (left, middle, right):
        axis.tick_params(axis="x", rotation=30)
    for i, s in enumerate(summary):
        label = "x " + s["status"].split(":")[0] if s["status"] != "ok" else f"{_fmt(s['trainable_percent'], '.2g')}%"
        middle.annotate(label, (i, s["trainable_percent"] or 0), ha="center", va="bottom", fontsize=8)
    fig.suptitle(line, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(task: Task, rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """compare.md, compare.json and compare.png in `out`; returns the summary, the verdict and the paths."""
    summary = summarize(task, rows)
    winner, tied, line = verdict(task, summary)
    table = markdown(task, summary)
    (out / "compare.md").write_text(table + "\n")
    (out / "compare.json").write_text(json.dumps({"summary": summary, "runs": rows, "winner": winner, "tied": tied,
                                                  "verdict": line}, indent=2, default=str))
    plot(task, summary, out / "compare.png")
    return {"summary": summary, "winner": winner, "tied": tied, "verdict": line, "table": table,
            "files": [str(out / f) for f in ("compare.md", "compare.json", "compare.png")]}
