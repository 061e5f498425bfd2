"""Whisper in the speech task, on a real converted checkpoint (tiny.en: `tunesuite convert`): the training step's
time per mode in fp32 and bf16, and the encoder cache's time per epoch against the normal path, side by side in
one process (rounds alternated).

    python bench/whisper.py --model /tmp/whisper-tiny-en --clips 16 --batch 4 --steps 3

Step times: each mode's Trainer (built as a run builds it) trains `--steps` + 1 steps on the normal path; the
median step after the first is kept (wall and CPU seconds). The cache: frozen and LoRA on the decoder only
(--lora-layers = the decoder's layers) each train one epoch on the `--clips` clips, uncached (`trainer.train()`)
and cached (the encoder pass, then the decoder's epoch): the per-epoch speed-up is the uncached epoch over the
cached epoch's training (the encoder pass is paid once per run, shown apart); per step: the median step after the
first on each side (an epoch of many steps tends to it: the Trainer's once-per-run costs are left out).
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the tone corpus the tests train on

import core  # noqa: E402
from core import fmt, text_table  # noqa: E402

MODES = {"full": {}, "frozen": {}, "lora": {}, "lora-decoder": {"mode": "lora"}, "bitfit": {}}
CACHED = ("frozen", "lora-decoder")


def settings_for(name: str, job: dict[str, Any], out: Path, **more: Any) -> dict[str, Any]:
    from transformers import AutoConfig

    extra = dict(MODES[name])
    if name == "lora-decoder":
        extra["lora_layers"] = AutoConfig.from_pretrained(job["model"]).decoder_layers
    return {"model": job["model"], "dataset": job["data"], "mode": extra.pop("mode", name), **extra,
            "output_dir": str(out / name), "per_device_train_batch_size": job["batch"], "eval_strategy": "no",
            "save_strategy": "no", "disable_tqdm": True, "seed": 0, "warmup_steps": 0, "max_duration": 30.0,
            "report_to": "none", "precision": job.get("precision", "auto"), **more}


def step_times(job: dict[str, Any]) -> list[dict[str, Any]]:
    import suite
    from probes import StepTimer

    rows = []
    for precision in ("fp32", "bf16"):
        for name in MODES:
            settings = settings_for(name, job, Path(job["work"]) / "steps", max_steps=job["steps"] + 1,
                                    precision=precision)
            trainer, _ = suite.build("asr", settings)
            timer = StepTimer()
            trainer.add_callback(timer)
            trainer.train()
            rows.append({"mode": name, "precision": precision, **timer.summary(1)})
            print(f"step {name} {precision}: {rows[-1]['step_s']:.2f} s (CPU {rows[-1]['step_cpu_s']:.2f} s)",
                  flush=True)
            del trainer
            gc.collect()
    return rows


def cache_epochs(job: dict[str, Any]) -> list[dict[str, Any]]:
    import suite
    from probes import StepTimer

    from tunesuite import get_task
    from tunesuite.train import feature_cache
    from tunesuite.train.feature_cache import encoder, partial
    from tunesuite.train.recipe import build

    task, results, passes, timers = get_task("asr"), [], [], []
    original = encoder.cached_split

    class TimedTrainer(partial.TuneTrainer):  # the cached side's inner Trainer, its steps timed
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            timers.append(StepTimer())
            self.add_callback(timers[-1])

    partial.TuneTrainer = TimedTrainer

    def timed_split(*args: Any, **kwargs: Any) -> Any:  # the encoder pass's CPU seconds, apart from training's
        cpu = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            passes.append(time.process_time() - cpu)

    encoder.cached_split = timed_split
    for name in CACHED:
        runs: dict[str, list[dict[str, float]]] = {"uncached": [], "cached": []}
        for i in range(job["repeats"]):
            for side in ("uncached", "cached") if i % 2 == 0 else ("cached", "uncached"):
                cfg = suite.run_config("asr", settings_for(name, job, Path(job["work"]) / "cache",
                                                           num_train_epochs=1))
                trainer, prepared = build(task, cfg)
                precision = "bf16" if cfg.training.bf16 else "fp16" if cfg.training.fp16 else "fp32"
                reason = feature_cache.why_not(task, cfg, prepared, trainer.model)
                if reason is not None:
                    raise SystemExit(f"{name}: the encoder cache is off ({reason})")
                passes.clear()
                timers.clear()
                wall, cpu = core.clock()
                if side == "uncached":
                    metrics: dict[str, float] = {}
                    timers.append(StepTimer())
                    trainer.add_callback(timers[-1])
                    train_s = trainer.train().metrics["train_runtime"]
                else:
                    metrics = feature_cache.train_head(trainer, task, cfg, prepared)
                    train_s = metrics["train_cached_runtime"]
                end_wall, end_cpu = core.clock()
                runs[side].append({"wall_s": end_wall - wall, "cpu_s": end_cpu - cpu, "train_s": train_s,
                                   "encoder_pass_s": metrics.get("feature_cache_seconds", 0.0),
                                   "encoder_pass_cpu_s": sum(passes),
                                   "step_cpu_s": timers[-1].summary(1)["step_cpu_s"]})
                print(f"cache {name} {side}: {runs[side][-1]}", flush=True)
                del trainer
                gc.collect()
        pairs = list(zip(runs["uncached"], runs["cached"], strict=True))
        # CPU seconds: on a shared machine a step waiting for a core costs wall time but no CPU time
        results.append({"mode": name, "precision": precision, "runs": runs,
                        "speedup_per_epoch_cpu": statistics.median(
                            u["cpu_s"] / (c["cpu_s"] - c["encoder_pass_cpu_s"]) for u, c in pairs),
                        "speedup_first_epoch_cpu": statistics.median(u["cpu_s"] / c["cpu_s"] for u, c in pairs),
                        "speedup_per_step_cpu": statistics.median(u["step_cpu_s"] / c["step_cpu_s"] for u, c in pairs),
                        "speedup_per_epoch_wall": statistics.median(u["train_s"] / c["train_s"] for u, c in pairs)})
    return results


def tables(results: dict[str, Any]) -> str:
    steps = [[r["mode"], r["precision"], fmt(r["step_s"], ".2f"), fmt(r["step_cpu_s"], ".2f")]
             for r in results["steps"]]
    cache = []
    for r in results["cache"]:
        med = {side: {k: statistics.median(x[k] for x in runs) for k in runs[0]} for side, runs in r["runs"].items()}
        cached_epoch = med["cached"]["cpu_s"] - med["cached"]["encoder_pass_cpu_s"]
        cache.append([r["mode"], fmt(med["uncached"]["cpu_s"], ".1f"), fmt(cached_epoch, ".1f"),
                      fmt(med["cached"]["encoder_pass_cpu_s"], ".1f"), f"{r['speedup_per_epoch_cpu']:.1f}x",
                      f"{r['speedup_first_epoch_cpu']:.2f}x", f"{r['speedup_per_epoch_wall']:.1f}x",
                      fmt(med["uncached"]["step_cpu_s"], ".2f"), fmt(med["cached"]["step_cpu_s"], ".2f"),
                      f"{r['speedup_per_step_cpu']:.1f}x"])
    job = results["job"]
    parts = []
    if steps:
        parts += [f"{job['model']}: step time at batch {job['batch']} (median of {job['steps']} steps after the first)",
                  text_table(["mode", "precision", "step s", "step CPU s"], steps), ""]
    if cache:
        precisions = "/".join(sorted({r["precision"] for r in results["cache"]}))  # what the runs trained in
        parts += [f"encoder cache, one epoch of {job['clips']} clips ({precisions}, median of {job['repeats']} "
                  "rounds)",
                  text_table(["mode", "uncached epoch CPU s", "cached epoch CPU s", "encoder pass CPU s (once)",
                              "per epoch", "first epoch", "per epoch (wall)", "uncached step CPU s",
                              "cached step CPU s", "per step"], cache)]
    return "\n".join(parts)


def main() -> None:
    import argparse
    import json

    from asr_fixtures import write_tone_corpus
    from setups import ROOT

    from tunesuite.files import write_text_atomic

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="/tmp/whisper-tiny-en", help="a converted Whisper (tunesuite convert)")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="the cache's runs (auto: bf16 where the CPU multiplies it natively, as a run decides)")
    p.add_argument("--skip-steps", action="store_true", help="only the cache's epochs")
    p.add_argument("--skip-cache", action="store_true", help="only the step times")
    p.add_argument("--out", type=Path, default=HERE / "whisper.json")
    args = p.parse_args()
    core.setup_process(args.threads)
    work = (ROOT / "runs" / ("bench-whisper-steps" if args.skip_cache else "bench-whisper")).resolve()
    data = work / f"tones-{args.clips}"
    if not (data / "train.csv").exists():
        write_tone_corpus(data, {"train": args.clips})
    job = {"model": args.model, "data": str(data), "work": str(work), "clips": args.clips, "batch": args.batch,
           "steps": args.steps, "repeats": args.repeats, "precision": args.precision}
    # the cache first: its figures matter most
    results: dict[str, Any] = {"job": job, "cache": [] if args.skip_cache else cache_epochs(job)}
    results["steps"] = [] if args.skip_steps else step_times(job)
    write_text_atomic(args.out, json.dumps(results, indent=2, default=float) + "\n")
    print(tables(results))


if __name__ == "__main__":
    main()
