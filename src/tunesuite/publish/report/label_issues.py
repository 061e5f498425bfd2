"""The label-errors section of report.html (label_issues.csv, written by `tunesuite audit`), and the audit's own
page: what was audited, how well the folds' models did, and the rows most probably mislabelled."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunesuite.files import write_text_atomic
from tunesuite.publish.report.html import esc, page, table
from tunesuite.tasks.label_issues import FILE, LabelIssue, read_csv

SHOWN = 50  # rows in the page; the CSV holds every one


def section(rows: list[dict[str, Any]]) -> list[str]:
    """The heading, a sentence and the table of the worst rows (none: a sentence saying so)."""
    parts = ["<h2>Probable label errors</h2>"]
    if not rows:
        return [*parts, "<p>cleanlab flagged no row: the out-of-fold predictions back every label.</p>"]
    shown = f"The first {SHOWN} shown; " if len(rows) > SHOWN else ""
    parts.append(f"<p>{len(rows):,} rows whose label the out-of-fold predictions do not back, most doubtful first "
                 f"(score near 0: probably wrong). {shown}every one is in {esc(FILE)}.</p>")
    body = [[r["split"], int(r["row"]), r["input"], r["given"], r["suggested"], float(r["score"])]
            for r in rows[:SHOWN]]
    return [*parts, table(["split", "row", "input", "given label", "suggested", "score"], body)]


def run_section(out: Path) -> list[str]:
    """A run folder's section: only when an audit wrote label_issues.csv into it."""
    return section(read_csv(out / FILE)) if (out / FILE).is_file() else []


def write_audit_report(out: Path, summary: dict[str, Any], found: list[LabelIssue]) -> Path:
    """OUT/report.html of an audit."""
    facts = [["task", summary["task"]], ["model", summary["model"]], ["dataset", summary["dataset"]],
             ["mode of the fold runs", summary["mode"]], ["folds", summary["folds"]],
             ["rows audited (train + validation)", summary["rows"]],
             ["out-of-fold accuracy", summary["out_of_fold_accuracy"]], ["rows flagged", summary["flagged"]]]
    rows = [{k: str(v) for k, v in asdict(issue).items()} for issue in found]
    parts = [f"<h1>audit: {esc(out.name)}</h1>", "<h2>Audit</h2>", table(None, facts),
             *section(rows), "<h2>Each fold's run</h2>",
             f"<pre><code>{esc(json.dumps(summary['fold_metrics'], indent=1))}</code></pre>"]
    path = out / "report.html"
    write_text_atomic(path, page(f"tunesuite audit: {out.name}", parts))
    return path
