"""`tunesuite report OUT1 OUT2 ...`: one page with the runs side by side (a column each) and their curves overlaid."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from tunesuite.errors import TunesuiteError
from tunesuite.files import write_text_atomic
from tunesuite.publish.report import ReportedRun
from tunesuite.publish.report.curves import plot
from tunesuite.publish.report.html import data_uri, esc, page, table
from tunesuite.publish.report.page import metric_rows, run_rows

log = logging.getLogger("tunesuite")


def compare_page(runs: list[ReportedRun]) -> str:
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):  # two folders of one name: tell them apart by their paths
        labels = [f"{r.out} ({r.config.get('mode', '?')})" for r in runs]
    columns = [dict(zip((row[0] for row in rows), (row[1:] for row in rows), strict=True))
               for rows in ([*run_rows(r)] for r in runs)]
    rows = [[name, *(c.get(name, ["-"])[0] for c in columns)] for name in columns[0] if name != "finished"]
    metrics = [{f"{m[0]} ({split})": value for m in metric_rows(r.results)
                for split, value in zip(("eval", "test"), m[1:], strict=True) if value != ""} for r in runs]
    for name in sorted({k for found in metrics for k in found}):
        rows.append([name, *(found.get(name, "") for found in metrics)])
    parts = [f"<h1>{len(runs)} runs compared</h1>", table(["", *labels], rows)]
    buffer = io.BytesIO()
    if plot({label: r.history for label, r in zip(labels, runs, strict=True)}, buffer):
        parts += ["<h2>Learning curves</h2>",
                  f'<p><img src="{data_uri(buffer.getvalue(), "image/png")}" alt="learning curves overlaid"></p>']
    commands = [f"<p><b>{esc(label)}</b></p><pre><code>{esc(r.summary['command'])}</code></pre>"
                for label, r in zip(labels, runs, strict=True) if r.summary.get("command")]
    if commands:
        parts += ["<h2>Commands</h2>", *commands]
    return page(f"tunesuite: {len(runs)} runs compared", parts)


def build_comparison(outs: list[str | Path], dest: str | Path) -> Path:
    """Write the comparison page of the run folders `outs` to `dest`."""
    dest = Path(dest)
    if dest.is_dir():
        raise TunesuiteError(f"--output {dest} is a folder; name the HTML file to write (e.g. {dest}/compare.html)")
    runs = [ReportedRun.read(out) for out in outs]
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dest, compare_page(runs))
    log.info("comparison of %d runs: %s", len(runs), dest)
    return dest
