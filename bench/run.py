"""Benchmark harness: step time, throughput, memory and data-pipeline cost per task x mode, against a bare
transformers.Trainer on the same model, data and TrainingArguments.

    python bench/run.py                       # small models + the real MiniLM, every task and mode (~10 min, 2 cores)
    python bench/run.py --quick               # tiny models, one round, a few steps (a smoke run)
    python bench/run.py --tasks text --modes lora full --steps 30
    python bench/run.py --setups minilm --modes lora --flag gradient_checkpointing=true
    python bench/run.py --scaling             # data set-up cost at 1k / 10k / 100k rows (bench/scaling.py)

Prints tables and writes bench/results.json. Each measurement runs in a fresh process (this script started
again with --worker), so peak memory belongs to that measurement alone; --quick runs them in-process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import core  # noqa: E402
import report  # noqa: E402
from setups import MODES, ROOT, SETUPS, TASK_SETUPS  # noqa: E402

RESULT_MARK = "BENCH-RESULT "


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny models, 1 round, 3 steps, in-process (smoke run)")
    p.add_argument("--tasks", nargs="+", default=list(TASK_SETUPS), choices=list(TASK_SETUPS))
    p.add_argument("--setups", nargs="+", choices=list(SETUPS), help="only these setups (default: the tasks')")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--steps", type=int, help="measured steps per run, after warm-up (default 12, MiniLM half; quick 3)")
    p.add_argument("--warmup", type=int, help="steps not measured at the start of each run (default 2; quick 1)")
    p.add_argument("--repeats", type=int, help="suite/bare rounds, A B B A ... (default 4, MiniLM at most 2; quick 1)")
    p.add_argument("--eval-rows", type=int, nargs=2, help="two eval-set sizes (default 200 1600; quick 40 160)")
    p.add_argument("--cache-epochs", type=int, default=1, help="epochs per run for the --cache-features row")
    p.add_argument("--precision-epochs", type=int, default=1,
                   help="epochs of each whole fp32 / bf16 run of the text demo's recipe (0: none)")
    p.add_argument("--compile", action="store_true",
                   help="add bf16 + torch.compile to the precision rows (slower than eager bf16 here, after minutes "
                        "of compiling: docs/modes.md, Fast on a CPU)")
    p.add_argument("--speech-parity", nargs="*", default=["full", "frozen", "lora", "prompt"], metavar="MODE",
                   help="the speech demo's runs in these modes, fp32 vs bf16 (default all four; none: skip)")
    p.add_argument("--threads", type=int, help="torch threads per measurement (default on CPU: 1, steady timings on "
                                               "a shared machine; 0: torch's own choice)")
    p.add_argument("--flag", action="append", default=[], metavar="KEY=VALUE",
                   help="extra suite flag for every training run, e.g. gradient_checkpointing=true "
                        "(TrainingArguments flags reach the bare baseline too)")
    p.add_argument("--in-process", action="store_true", help="no worker processes (peak memory then mixes)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench", help="models, data and run outputs")
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    p.add_argument("--scaling", action="store_true", help="only the data set-up scaling table (bench/scaling.py)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one measurement, print its JSON
    args = p.parse_args(argv)
    quick = args.quick
    args.size = "quick" if quick else "small"
    args.steps = args.steps or (3 if quick else 12)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.repeats = args.repeats or (1 if quick else 4)
    args.eval_rows = args.eval_rows or ([40, 160] if quick else [200, 1600])
    args.in_process = args.in_process or quick
    if args.threads is None:
        import torch

        args.threads = 0 if torch.cuda.is_available() else 1
    if args.setups is None:  # the real MiniLM is too slow for a smoke run
        args.setups = [s for t in args.tasks for s in TASK_SETUPS[t] if not (quick and s == "minilm")]
    return args


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every measurement, as a job a worker can run on its own."""
    common = {"work": str(args.work.resolve()), "size": args.size}
    jobs = [{"kind": "train", "setup": s, "mode": m, "steps": max(2, round(args.steps * SETUPS[s].step_scale)),
             "warmup": args.warmup, "repeats": min(args.repeats, SETUPS[s].max_repeats or args.repeats),
             "flags": core.flag_values(args.flag),
             "memory_run": not args.in_process, **common} for s in args.setups for m in args.modes]
    if "w2v" in args.setups:
        jobs.append({"kind": "asr_padding", **common})
        if not args.quick:  # real speech (espeak-ng), ~1 min
            jobs.append({"kind": "asr_preprocessing", "workers": [1, 2], **common})
        for rows in args.eval_rows:
            for reduced in (True, False):
                jobs.append({"kind": "eval_memory", "rows": rows, "max_rows": max(args.eval_rows),
                             "reduced": reduced, **common})
    if "minilm" in args.setups and "frozen" in args.modes:
        for layers in (0, 1):  # the head only (full cache), the top layer too (partial cache)
            for cache in ("never", "auto"):  # one round: whole runs are long, and the gap is large
                jobs.append({"kind": "feature_cache", "cache": cache, "layers": layers, "epochs": args.cache_epochs,
                             **common})
    precise = "minilm" if "minilm" in args.setups else "bert" if "bert" in args.setups else None
    if precise and "frozen" in args.modes:  # the partial cache per epoch (the quick run: the tiny BERT)
        jobs.append({"kind": "partial_cache", "setup": precise, "rows": 48 if args.quick else 400, "layers": 1,
                     "repeats": 1 if args.quick else 2, **common})
    if precise and "lora" in args.modes:
        from precision import QUICK, VARIANTS

        variants = list(QUICK) if args.quick else [v for v in VARIANTS if args.compile or "compile" not in v]
        jobs.append({"kind": "precision", "setup": precise, "mode": "lora", "variants": variants,
                     "steps": max(2, round(args.steps * SETUPS[precise].step_scale)), "warmup": args.warmup,
                     "repeats": 1 if args.quick else 3, "flags": core.flag_values(args.flag), **common})
        if precise == "minilm" and args.precision_epochs:
            jobs.append({"kind": "precision_accuracy", "epochs": args.precision_epochs,
                         "variants": [v for v in variants if v in QUICK], **common})  # fp32 vs bf16
        if not args.quick and args.speech_parity:
            jobs.append({"kind": "precision_speech", "modes": args.speech_parity, **common})
    return jobs


def measure_job(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement, by its kind: the parts (measure, partial, precision) are imported here, the driver, only."""
    import measure
    import partial
    import precision

    kinds = {"train": measure.train, "asr_padding": measure.asr_padding, "eval_memory": measure.eval_memory,
             "feature_cache": measure.feature_cache, "asr_preprocessing": measure.asr_preprocessing,
             "precision": precision.step_times, "precision_accuracy": precision.accuracy,
             "precision_speech": precision.speech_accuracy, "partial_cache": partial.epoch_times}
    return kinds[job["kind"]](job)


def run_job(job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A job's result: in a fresh `--worker` process (its JSON on stdout), or in this process."""
    job = {**job, "threads": args.threads}
    if job["kind"] == "feature_cache":
        from measure import cache_flag_exists

        if not cache_flag_exists():
            return {"skipped": "tunesuite has no --cache-features flag yet"}
    if args.in_process:
        core.setup_process(args.threads)
        return measure_job(job)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"worker failed ({job['kind']}, exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_MARK) :])


def worker(spec: str) -> None:
    job = json.loads(spec)
    core.setup_process(job.get("threads"))
    print(RESULT_MARK + json.dumps(measure_job(job)), flush=True)


def build_all(args: argparse.Namespace) -> None:
    """Write every setup's model and data once, before the workers start (they only read them)."""
    from setups import prepare

    for name in args.setups:
        prepare(name, args.work.resolve(), args.size)


def meta(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    return {"date": datetime.date.today().isoformat(), "device": device, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "torch_threads": args.threads or torch.get_num_threads(),
            "command": " ".join(["python bench/run.py", *sys.argv[1:]]), "size": args.size, "steps": args.steps,
            "warmup": args.warmup, "repeats": args.repeats, "isolated": not args.in_process,
            "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.worker:
        worker(args.worker)
        return {}
    if args.scaling:  # set-up time and peak RSS against the data's size: its own module and table
        import scaling

        return {"scaling": scaling.main([])}
    start = time.perf_counter()
    core.setup_process(args.threads)
    build_all(args)
    results: dict[str, Any] = {"train": [], "asr_padding": None, "asr_preprocessing": None, "eval_memory": [],
                               "feature_cache": [], "precision": [], "precision_accuracy": [],
                               "precision_speech": [],
                               "partial_cache": []}
    for job in plan(args):
        print(f"[{time.perf_counter() - start:6.0f}s] {report.describe(job)}", flush=True)
        began = time.perf_counter()
        result = {**run_job(job, args), "job_seconds": round(time.perf_counter() - began, 1)}
        if job["kind"] == "train":
            results["train"].append(result)
        elif job["kind"] in ("asr_padding", "asr_preprocessing"):
            results[job["kind"]] = result
        else:
            results[job["kind"]].append(result)
    results["summary"] = report.summarise(results)
    results["meta"] = meta(args, time.perf_counter() - start)
    import partial
    import precision

    print("\n" + report.tables(results, [partial.table(results), precision.table(results)]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
