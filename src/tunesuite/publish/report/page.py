"""The page of one run (report.html): the run, its curves, metrics, per-class table, plots and worst mistakes."""

from __future__ import annotations

import json
from typing import Any

from tunesuite.publish.report.curves import CURVES
from tunesuite.publish.report.html import esc, page, picture, table
from tunesuite.publish.report.label_issues import run_section as label_issues_section
from tunesuite.publish.report.mistakes import mistakes_table
from tunesuite.tasks.metrics import VIEW_CLASSES, weakest_classes

_SPEED = ("_runtime", "_per_second", "_preparation_time")  # how fast, not how well


def metric_rows(results: dict[str, Any]) -> list[list[Any]]:
    """metric -> [name, eval value, test value]: what the model scores (speed is in the run table)."""
    names = sorted({k.split("_", 1)[1] for k in results if k.startswith(("eval_", "test_")) and
                    isinstance(results[k], (int, float)) and not k.endswith(_SPEED)})
    return [[n, *(results.get(f"{split}_{n}", "") for split in ("eval", "test"))] for n in names]


def run_rows(run: Any) -> list[list[Any]]:
    cfg, res, summary = run.config, run.results, run.summary
    trainable = (f"{res['trainable_percent']:.2f}% ({res.get('trainable_params', 0):,} of "
                 f"{res.get('total_params', 0):,} parameters)") if "trainable_percent" in res else "-"
    examples = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                         for k, v in summary.get("examples", {}).items()) or "-"
    times = ", ".join(f"{split} {res[f'{split}_runtime']:.2f} s" for split in ("train", "eval", "test")
                      if isinstance(res.get(f"{split}_runtime"), (int, float))) or "-"
    settings = [[name, value] for name, value in summary.get("settings", {}).items() if name != "mode"]
    return [["task", cfg.get("task", "-")], ["base model", cfg.get("model", "-")],
            ["mode", summary.get("settings", {}).get("mode", cfg.get("mode", "-"))], *settings,
            ["dataset", cfg.get("dataset", "-")], ["trainable", trainable], ["examples", examples],
            ["time", times], ["finished", summary.get("finished", "-")]]


def per_class_section(report: dict[str, dict], split: str) -> list[str]:
    """The per-class table: every class up to VIEW_CLASSES, else the weakest ones and where the rest are."""
    names = list(report) if len(report) <= VIEW_CLASSES else weakest_classes(report, VIEW_CLASSES)
    rows = [[name, report[name]["precision"], report[name]["recall"], report[name]["f1"], report[name]["support"]]
            for name in names]
    note = [] if len(names) == len(report) else [
        f'<p class="muted">The {len(names)} classes of lowest F1 of {len(report):,}; every class: '
        f"{esc(split)}_per_class.json in the run folder.</p>"]
    return [*note, table(["class", "precision", "recall", "F1", "support"], rows)]


def confusion_note(classes: int, split: str) -> str:
    """Past VIEW_CLASSES: that the picture shows only the most-confused classes, and where the whole matrix is."""
    return (f'<p class="muted">The {VIEW_CLASSES} most-confused of {classes:,} classes (most errors as the true or '
            "the predicted class), the others counted together in the last row and column. The full matrix: "
            f"{esc(split)}_confusion_matrix.csv in the run folder, one <code>true,predicted,count</code> row per "
            "nonzero cell.</p>")


def run_page(run: Any) -> str:
    """report.html of one run folder (publish.report.ReportedRun)."""
    out, split = run.out, run.split
    parts = [f"<h1>{esc(run.config.get('task', 'run'))}: {esc(out.name)}</h1>", "<h2>Run</h2>",
             table(None, run_rows(run))]
    if run.summary.get("command"):
        parts.append(f"<pre><code>{esc(run.summary['command'])}</code></pre>")
    parts += ["<h2>Learning curves</h2>", picture(out / CURVES, "learning curves") or
              '<p class="muted">no training log in this folder</p>', "<h2>Metrics</h2>",
              table(["metric", "eval", "test"], metric_rows(run.results))]
    report = json.loads((out / f"{split}_per_class.json").read_text()) if split and \
        (out / f"{split}_per_class.json").is_file() else {}
    if report:
        parts += [f"<h2>Per class ({esc(split)} split)</h2>", *per_class_section(report, split)]
    for name, title in (("confusion_matrix", "Confusion matrix"), ("roc_curve", "ROC curve"),
                        ("pr_curve", "Precision/recall curve and operating point"),
                        ("reliability", "Reliability diagram")):
        if split and (out / f"{split}_{name}.png").is_file():
            parts += [f"<h2>{title} ({esc(split)} split)</h2>", picture(out / f"{split}_{name}.png", title)]
            if name == "confusion_matrix" and len(report) > VIEW_CLASSES and \
                    (out / f"{split}_confusion_matrix.csv").is_file():  # (a run before the CSV drew every class)
                parts.append(confusion_note(len(report), split))
    if split and (out / f"{split}_mistakes.jsonl").is_file():
        parts.append(f"<h2>Worst mistakes ({esc(split)} split)</h2>")
        parts.append(mistakes_table(run.mistakes) if run.mistakes else "<p>no mistakes on this split</p>")
    parts += label_issues_section(out)
    return page(f"tunesuite report: {out.name}", parts)
