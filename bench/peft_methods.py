"""The PEFT methods side by side on the real MiniLM-L6 (fortunes topics, the text demo's data): per method and
learning rate, test accuracy mean +- std over seeds, trainable %, step time and peak memory; `compare`'s tie rule
(choose/compare/table.verdict) says what counts as a win.

    python bench/peft_methods.py --lr-factors 0.3 1 3 --seeds 0          # the learning-rate sweep
    python bench/peft_methods.py --seeds 0 1 2                            # the benchmark, at the default rates
    python bench/peft_methods.py --methods lora ia3 --seeds 0 --quick     # a smoke run (few rows, one epoch)

Each run is a fresh process (this script again with --worker), so its peak memory is its own. Prints one table row
per method (and rate) with the command that reproduces it, and writes bench/peft_methods.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tunesuite.modes import peft_methods, peft_methods_more

HERE = Path(__file__).resolve().parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
MARK = "PEFT-BENCH "
# every registered peft method, LoRA first (the registry's modules import no torch)
METHODS = ["lora", *(m.name for m in [*peft_methods.METHODS, *peft_methods_more.NEWER])]
# a short run: every method sees the same rows, batches and epochs
RUN = {"num_train_epochs": 2, "per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
       "max_seq_length": 64, "eval_strategy": "no", "save_strategy": "no", "do_predict": True,
       "disable_tqdm": True, "logging_steps": 1000}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--lr-factors", nargs="+", type=float, default=[1.0],
                   help="learning rates as multiples of each mode's default (the sweep: 0.3 1 3)")
    p.add_argument("--train-per-class", type=int, default=30, help="training quotes per topic")
    p.add_argument("--test-rows", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1: steady on a shared machine)")
    p.add_argument("--quick", action="store_true", help="15 quotes per topic, 40 test rows, one epoch")
    p.add_argument("--out", type=Path, default=HERE / "peft_methods.json")
    p.add_argument("--reuse", type=Path, nargs="*", default=[],
                   help="earlier results (their JSON): a run of the same method, rate and seed is taken, not rerun")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def write_data(folder: Path, per_class: int, test_rows: int, seed: int = 0) -> Path:
    """The text demo's fortunes split, cut to `per_class` training quotes per topic and `test_rows` test rows."""
    from tunesuite.demos.corpora import write_fortunes_dataset

    full = write_fortunes_dataset(folder / "full")
    out = folder / f"cut-{per_class}-{test_rows}"
    out.mkdir(parents=True, exist_ok=True)
    for split, keep in (("train", None), ("validation", test_rows), ("test", test_rows)):
        with (full / f"{split}.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        if keep is None:
            seen: dict[str, int] = {}
            rows = [r for r in rows if seen.setdefault(r["label"], 0) < per_class and not seen.update(
                {r["label"]: seen[r["label"]] + 1})]
        else:
            rows = random.Random(seed).sample(rows, min(keep, len(rows)))
        with (out / f"{split}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, ["text", "label"])
            writer.writeheader()
            writer.writerows(rows)
    return out


def worker(spec: dict[str, Any]) -> None:
    """One run, in this process: its metrics, wall time and peak resident memory on one marked line."""
    import logging
    import resource

    import datasets
    import torch
    import transformers

    import tunesuite

    torch.set_num_threads(spec.pop("threads"))
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.getLogger("tunesuite").setLevel(logging.WARNING)
    start = time.perf_counter()
    metrics = tunesuite.finetune("text-classification", spec.pop("model"), spec.pop("data"), **spec)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(MARK + json.dumps({"metrics": metrics, "wall_s": wall, "peak_memory_mb": peak}, default=str), flush=True)


def one_run(args: argparse.Namespace, method: str, lr: float, seed: int, data: Path, model: str, out: Path) -> dict:
    spec = {**RUN, "mode": method, "learning_rate": lr, "seed": seed, "data_seed": seed, "threads": args.threads,
            "model": model, "data": str(data), "output_dir": str(out), "overwrite_output_dir": True}
    if args.quick:
        spec["num_train_epochs"] = 1
    shutil.rmtree(out, ignore_errors=True)  # a killed run's leftovers would stop the next one
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARK)), None)
    if line is None:
        return {"status": "failed: " + (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return {"status": "ok", **json.loads(line[len(MARK):])}


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    import tunesuite
    from tunesuite import registry
    from tunesuite.choose.compare.table import summarize, verdict
    from tunesuite.demos.corpora import minilm_path

    task = tunesuite.get_task("text-classification")
    per_class, test_rows = (15, 40) if args.quick else (args.train_per_class, args.test_rows)
    work = Path("runs/bench-peft-methods")
    data = write_data(work / "data", per_class, test_rows)
    model, modes = minilm_path(), registry.modes()
    rows, started = [], time.perf_counter()
    earlier = {(r["candidate"], r["seed"]): r for file in args.reuse for r in json.loads(file.read_text())["runs"]
               if r["status"] == "ok"}
    for method in args.methods:
        default = modes[method].learning_rate_for(22_700_000)  # MiniLM-L6's parameters
        for factor in args.lr_factors:
            lr = float(f"{default * factor:.2g}")
            for seed in args.seeds:
                if (f"{method} @ {lr:g}", seed) in earlier:
                    rows.append(earlier[(f"{method} @ {lr:g}", seed)])
                    continue
                run = one_run(args, method, lr, seed, data, model, work / f"{method}-{lr:g}-{seed}")
                metrics = run.get("metrics", {})
                steps = metrics.get("train_steps_per_second")
                row = {"candidate": f"{method} @ {lr:g}", "method": method, "learning_rate": lr, "seed": seed,
                       "status": run["status"], "metrics": metrics, "wall_s": run.get("wall_s"),
                       "peak_memory_mb": run.get("peak_memory_mb"), "step_s": 1 / steps if steps else None}
                rows.append(row)
                print(f"{row['candidate']} seed {seed}: {run['status']} accuracy "
                      f"{metrics.get('test_accuracy', float('nan')):.4f} ({run.get('wall_s') or 0:.0f} s)", flush=True)
    summary = summarize(task, rows)
    for s in summary:
        mine = [r for r in rows if r["candidate"] == s["candidate"] and r["step_s"]]
        s["step_s"] = statistics.fmean(r["step_s"] for r in mine) if mine else None
        first = next(r for r in rows if r["candidate"] == s["candidate"])
        s["command"] = (f"python bench/peft_methods.py --methods {first['method']} --seeds "
                        f"{' '.join(map(str, args.seeds))} --lr-factors "
                        f"{first['learning_rate'] / modes[first['method']].learning_rate_for(22_700_000):.2g} "
                        f"--train-per-class {per_class} --test-rows {test_rows}" + (" --quick" if args.quick else ""))
    winner, tied, line = verdict(task, summary)
    wall = time.perf_counter() - started
    print(markdown(summary, winner, tied, line, wall))
    args.out.write_text(json.dumps({"summary": summary, "runs": rows, "verdict": line, "wall_s": wall,
                                    "settings": {**RUN, "train_per_class": per_class, "test_rows": test_rows,
                                                 "threads": args.threads, "quick": args.quick}},
                                   indent=2, default=str))


def markdown(summary: list[dict], winner: str | None, tied: list[str], line: str, wall: float) -> str:
    """One row per method (and rate), the stacked style: the numbers, then the command that reproduces them."""
    lines = ["| method @ learning rate | test accuracy | seeds | trainable % | step s | peak MiB | reproduce |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        mark = " **(winner)**" if s["candidate"] == winner else " (tie)" if s["candidate"] in tied else ""
        score = "-" if s["mean"] is None else f"{s['mean']:.4f}" + (f" ± {s['std']:.4f}" if s["std"] else "")
        cells = [f"{s['candidate']}{mark}", score, str(s["runs"]),
                 "-" if s["trainable_percent"] is None else f"{s['trainable_percent']:.2f}",
                 "-" if s["step_s"] is None else f"{s['step_s']:.3f}",
                 "-" if s["peak_memory_mb"] is None else f"{s['peak_memory_mb']:.0f}", f"`{s['command']}`"]
        lines.append("| " + " | ".join(cells) + " |" + ("" if s["status"] == "ok" else f" {s['status']}"))
    return "\n".join([*lines, "", line, f"wall time {wall / 60:.1f} min"])


if __name__ == "__main__":
    main()
