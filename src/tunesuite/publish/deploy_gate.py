"""The quality gate of an ONNX export: what was written is scored before it is kept.

The run's test split (or `--dataset`) goes through the PyTorch model, the ONNX fp32 model and the int8 one in the
same batches; the task's own compute_metrics scores each, so the figures are the ones a run reports. Beside the
metric: the largest logit difference from PyTorch, latency at batch 1 (p50/p95) and throughput at batch 32 on this
machine, and the file sizes. The report is written as deploy_report.json and .md; an int8 model that loses more
than `max_drop` of the metric is refused with both figures.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesuite import data
from tunesuite.errors import TunesuiteError
from tunesuite.files import write_text_atomic
from tunesuite.models.run_folder import CONFIG
from tunesuite.registry import Task

REPORT = "deploy_report"
Runner = Callable[[dict[str, Any]], Any]  # model inputs -> logits (a torch tensor)


def gate_split(out: Path, task: Task, processor: Any, dataset: str | None, workdir: Path) -> tuple[Any, Any]:
    """(Prepared, the split to score): the run's test split (its eval split when it has none), or all of
    `dataset` when that has a single split, preprocessed as the run did."""
    from tunesuite.config import parse
    from tunesuite.config import resolve as config

    parser = parse.build_parser(task, explicit_only=True)
    values = {**parse.yaml_values(parser, task, out / CONFIG), "output_dir": str(workdir),
              "resume_from_checkpoint": None}
    if dataset:
        values["dataset"] = dataset
    raw = data.load_raw(values["dataset"], values.get("dataset_config"), values.get("cache_dir"))
    if list(raw) == ["train"]:
        values["eval_split"] = "train"  # one file or folder without splits: score all of it
    cfg = config.resolve(task, values, [])
    prepared = dataclasses.replace(task.data.preprocess(raw, processor, cfg), train=None)
    split = prepared.test if prepared.test is not None else prepared.eval
    if split is None or len(split) == 0:
        raise TunesuiteError(f"{values['dataset']} has no test or eval rows to check the export on; pass "
                             "--dataset with labelled data")
    return prepared, split


def batches(split: Any, collate: Callable, size: int) -> list[dict[str, Any]]:
    return [collate([split[i] for i in range(start, min(start + size, len(split)))])
            for start in range(0, len(split), size)]


def padded(arrays: list[Any]) -> Any:
    """Batches of predictions or labels as one array; a ragged last axis (speech) padded with -100."""
    import numpy as np

    arrays = [np.asarray(a) for a in arrays]
    if arrays[0].ndim < 2 or len({a.shape[1:] for a in arrays}) == 1:
        return np.concatenate(arrays)
    width = max(a.shape[1] for a in arrays)
    return np.concatenate([np.pad(a, [(0, 0), (0, width - a.shape[1]), *[(0, 0)] * (a.ndim - 2)],
                                  constant_values=-100) for a in arrays])


def _largest_difference(a: Any, b: Any) -> float:
    finite = a.isfinite() & b.isfinite() & (a.abs() < 1e30) & (b.abs() < 1e30)  # CTC pads frames with finfo.min
    return float((a - b).abs()[finite].max()) if finite.any() else 0.0


def score(task: Task, prepared: Any, split: Any, runners: dict[str, Runner], batch_size: int = 32) -> dict[str, Any]:
    """Each runner's main metric on `split`, and its largest logit difference from the first runner."""
    from transformers import EvalPrediction

    split_batches = batches(split, task.data.collator(prepared.processor), batch_size)
    metric = task.results.main_metric
    compute = task.results.compute_metrics(prepared)
    reduce = task.results.preprocess_logits or (lambda logits, labels: logits)
    labels = padded([b["labels"].numpy() for b in split_batches])
    reference: list[Any] = []
    scores: dict[str, Any] = {}
    for name, runner in runners.items():
        logits = [runner({k: v for k, v in b.items() if k != "labels"}).float() for b in split_batches]
        reference = reference or logits
        predictions = padded([reduce(x, None).numpy() for x in logits])
        scores[name] = {metric: float(compute(EvalPrediction(predictions=predictions, label_ids=labels))[metric]),
                        "max_logit_diff": max(_largest_difference(x, r) for x, r in zip(logits, reference,
                                                                                         strict=True))}
    return {"metric": metric, "greater_is_better": task.results.greater_is_better, "rows": len(split),
            "models": scores}


def speed(runner: Runner, split: Any, collate: Callable, runs: int = 30) -> dict[str, float]:
    """Latency p50/p95 (ms) of one row at a time and rows per second in batches of 32, timed here and now."""
    import numpy as np

    one = collate([split[0]])
    one.pop("labels", None)
    rows = [split[i % len(split)] for i in range(32)]
    many = collate(rows)
    many.pop("labels", None)
    runner(one), runner(many)  # warm up: the first call allocates
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(one)
        times.append(time.perf_counter() - start)
    start, repeats = time.perf_counter(), max(2, runs // 10)
    for _ in range(repeats):
        runner(many)
    per_batch = (time.perf_counter() - start) / repeats
    return {"p50_ms": round(1000 * float(np.percentile(times, 50)), 3),
            "p95_ms": round(1000 * float(np.percentile(times, 95)), 3),
            "rows_per_s_batch32": round(32 / per_batch, 1)}


def drop(report: dict[str, Any], name: str, reference: str = "pytorch_fp32") -> float:
    """How much worse `name` scores than `reference` (positive: worse), whichever way the metric points."""
    models, metric = report["models"], report["metric"]
    change = models[name][metric] - models[reference][metric]
    return (-change if report["greater_is_better"] else change) + 0.0  # + 0.0: no "-0.0000" in the report


def refusal(report: dict[str, Any], name: str, max_drop: float) -> str | None:
    """The error line when `name` loses more than `max_drop` of the metric; None when it passes."""
    lost = drop(report, name)
    if math.isnan(lost) or lost <= max_drop + 1e-12:
        return None
    metric, models = report["metric"], report["models"]
    return (f"the {name} model scores {metric} {models[name][metric]:.4f} against {models['pytorch_fp32'][metric]:.4f} "
            f"for PyTorch fp32 (a drop of {lost:.4f}, past --max-metric-drop {max_drop}); nothing was kept: export "
            "without --quantize for fp32 ONNX, or allow the drop with a larger --max-metric-drop")


def markdown(report: dict[str, Any]) -> str:
    """deploy_report.md: one row per model."""
    metric = report["metric"]
    lines = [f"# Deploy report: {report['run']}", "",
             f"Checked on {report['rows']} rows ({report['split']}); timed on this machine ({report['machine']}).", "",
             f"| model | {metric} | drop | max logit diff | p50 ms (batch 1) | p95 ms | rows/s (batch 32) | MB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in report["models"].items():
        lines.append(f"| {name} | {row[metric]:.4f} | {drop(report, name):+.4f} | {row['max_logit_diff']:.2e} | "
                     f"{row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['rows_per_s_batch32']:.1f} | "
                     f"{row['size_mb']:.2f} |")
    lines += ["", f"Kept: {', '.join(report['kept'])}. Gate: --max-metric-drop {report['max_metric_drop']}.", ""]
    return "\n".join(lines)


def write(dest: Path, report: dict[str, Any], as_markdown: Callable[[dict[str, Any]], str] | None = None) -> None:
    """deploy_report.json and deploy_report.md in `dest` (the table by `as_markdown`, else this module's), each
    written atomically."""
    write_text_atomic(dest / f"{REPORT}.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(dest / f"{REPORT}.md", (as_markdown or markdown)(report))
