"""OUT/report.html: what a run did, drawn from its folder alone (so `tunesuite report OUT` rebuilds it).

At the end of a run (rank 0) the run writes what the page needs beside the model: trainer_state.json (the log
history), run_summary.json (data sizes, the command), learning_curves.png; evaluation wrote the per-class
reports, plots and {split}_mistakes.jsonl. The page inlines every picture: one file, no network."""

from __future__ import annotations

import json
import logging
import time
from functools import cached_property
from pathlib import Path
from typing import Any

from tunesuite.config.settings import run_settings
from tunesuite.errors import TunesuiteError
from tunesuite.files import write_text_atomic
from tunesuite.models.run_folder import RunFolder
from tunesuite.publish.report.curves import save_learning_curves

log = logging.getLogger("tunesuite")
REPORT, SUMMARY, STATE = "report.html", "run_summary.json", "trainer_state.json"


def _jsonable(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def check_report_to(report_to: list[str] | None) -> None:
    """--report-to tensorboard needs the tensorboard package (the `tensorboard` extra): say so in one line."""
    import importlib.util

    tools = ("tensorboard", "tensorboardX")
    if "tensorboard" in (report_to or []) and not any(importlib.util.find_spec(m) for m in tools):
        raise TunesuiteError("--report-to tensorboard needs the tensorboard package: pip install "
                             "'tunesuite[tensorboard]' (or drop the flag: every run writes learning_curves.png)")


def write_mistakes(task: Any, output: Any, prepared: Any, out: Path, split: str) -> None:
    """OUT/{split}_mistakes.jsonl from the task's hook (ResultSpec.mistakes); nothing when it has none."""
    records = task.results.mistakes(output, prepared, split) if task.results.mistakes else None
    if records is not None:
        lines = "".join(json.dumps(r, default=_jsonable) + "\n" for r in records)
        write_text_atomic(out / f"{split}_mistakes.jsonl", lines)


class ReportedRun(RunFolder):
    """A run folder with what its page shows besides the config and results: the run's summary, its log
    history, and the split the per-class table, plots and mistakes are of (test, else eval) with its mistakes."""

    @property
    def label(self) -> str:
        return f"{self.out.name} ({self.config.get('mode', '?')})"

    @cached_property
    def summary(self) -> dict[str, Any]:
        return self.read_json(SUMMARY, {})

    @cached_property
    def history(self) -> list[dict[str, Any]]:
        return self.read_json(STATE, {}).get("log_history", [])

    @cached_property
    def split(self) -> str | None:
        for split in ("test", "eval"):
            if any((self.out / f"{split}_{name}").exists() for name in ("mistakes.jsonl", "per_class.json")) or \
                    f"{split}_runtime" in self.results:
                return split
        return None

    @cached_property
    def mistakes(self) -> list[dict[str, Any]]:
        return self.read_jsonl(f"{self.split}_mistakes.jsonl") if self.split else []


def build_report(out: Path) -> Path:
    """Write OUT/report.html from the folder (the curves redrawn from its log history)."""
    from tunesuite.publish.report.page import run_page

    started = time.perf_counter()
    run = ReportedRun.read(out)
    if run.history:
        save_learning_curves(run.history, run.out)
    path = run.out / REPORT
    write_text_atomic(path, run_page(run))
    log.info("report: %s (%.0f KB, %.1f s)", path, path.stat().st_size / 1024, time.perf_counter() - started)
    return path


def write_run_report(trainer: Any, cfg: Any, prepared: Any, out: Path, command: str) -> Path | None:
    """At the end of a run (rank 0): the log history and the run's summary, then report.html (and the curves).
    The model and results are saved by then: a write that fails here warns instead of failing the run."""
    splits = (("train", prepared.train), ("eval", prepared.eval), ("test", prepared.test))
    sizes = {split: len(data) if hasattr(data, "__len__") else "streamed" for split, data in splits if data is not None}
    summary = {"command": command, "examples": sizes, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
               "labels": prepared.label_names, "settings": run_settings(cfg) if cfg is not None else {}}
    try:
        trainer.save_state()  # OUT/trainer_state.json
        write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2, default=str))
        return build_report(out)
    except OSError as e:
        log.warning("report.html not written (%s); `tunesuite report %s` writes it later", e, out)
        return None
