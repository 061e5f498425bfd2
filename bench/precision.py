"""Precision on the CPU: float32 vs bf16 (the Trainer's CPU autocast) vs bf16 + torch.compile, side by side in one
process, and accuracy parity from short whole runs.

    python bench/precision.py                 # MiniLM LoRA, batch 16 x up to 128 tokens, 3 rounds
    python bench/precision.py --steps 4 --repeats 2 --compile    # bf16 + torch.compile too (minutes of compiling)
    python bench/precision.py --repeats 0 --accuracy-epochs 3 --speech-modes full frozen lora prompt

The step-time job (kind "precision") trains each variant in turn, rounds rotated (A B C, B C A, C A B), and
takes per round the ratio to float32's median step; compile time is the first step's excess over the steady
step, reported apart (and in the whole-run time). The parity job ("precision_accuracy") is a whole tunesuite run
per variant on the text demo's data and recipe, fewer epochs.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import core  # noqa: E402
from core import fmt, text_table  # noqa: E402

# bf16 trains with eager attention on a CPU (--attn-implementation auto); bf16+sdpa keeps the library's default.
VARIANTS = {"fp32": {}, "bf16": {"bf16": True}, "bf16+sdpa": {"bf16": True, "attn_implementation": "sdpa"},
            "bf16+compile": {"bf16": True, "torch_compile": True}}
QUICK = ("fp32", "bf16")  # the smoke run's variants


def step_times(job: dict[str, Any]) -> dict[str, Any]:
    import gc

    import probes
    import suite
    from setups import SETUPS, prepare
    from transformers import set_seed

    setup, work = SETUPS[job["setup"]], Path(job["work"])
    model, data = prepare(setup.name, work, job["size"])
    names = [n for n in VARIANTS if n in job["variants"]]
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for i in range(job["repeats"]):
        for name in names[i % len(names):] + names[: i % len(names)]:
            flags = {**setup.flags, **job.get("flags", {}), **VARIANTS[name]}
            settings = suite.options(model, data, job["mode"], work / "out" / f"precision-{name}",
                                     job["warmup"] + job["steps"] + 1, **flags)
            trainer = suite.build(setup.task, settings)[0]
            timer = probes.StepTimer()
            trainer.add_callback(timer)
            set_seed(0)
            start = time.perf_counter()
            trainer.train()
            whole = time.perf_counter() - start
            summary = timer.summary(job["warmup"])
            first = timer.ends[0][0] - start
            runs[name].append({**summary, "whole_s": whole, "first_step_s": first,
                               "first_excess_s": first - summary["step_s"], "round": i})
            del trainer
            gc.collect()

    def ratio(name: str, key: str = "step_s") -> float | None:
        pairs = list(zip(runs[name], runs["fp32"], strict=True))
        return statistics.median(a[key] / b[key] for a, b in pairs) if "fp32" in runs else None

    out = {"setup": setup.name, "model": setup.label, "mode": job["mode"], "runs": runs, "variants": {}}
    for name in names:
        steps = [r["step_s"] for r in runs[name]]
        out["variants"][name] = {"step_s_median": statistics.median(steps), "step_s_min": min(steps),
                                 "compile_s": statistics.median(r["first_excess_s"] for r in runs[name]),
                                 "whole_s": statistics.median(r["whole_s"] for r in runs[name]),
                                 "ratio": ratio(name), "cpu_ratio": ratio(name, "step_cpu_s"),
                                 "whole_ratio": ratio(name, "whole_s")}
    return out


def accuracy(job: dict[str, Any]) -> dict[str, Any]:
    """A whole run of the text demo's recipe (MiniLM LoRA on fortunes topics) per variant: accuracy and time."""
    from setups import prepare

    import tunesuite
    from tunesuite.demos.text import RECIPE

    work = Path(job["work"])
    model, data = prepare("minilm", work, job["size"])
    out: dict[str, Any] = {"epochs": job["epochs"], "variants": {}}
    for name in job["variants"]:
        start = time.perf_counter()
        result = tunesuite.finetune(
            "text-classification", str(model), str(data), output_dir=str(work / "out" / f"acc-{name}"),
            overwrite_output_dir=True,
            **{**RECIPE, "num_train_epochs": job["epochs"]}, save_strategy="no", eval_strategy="no",
            disable_tqdm=True, seed=0, **VARIANTS[name])
        out["variants"][name] = {"wall_s": time.perf_counter() - start, "train_runtime": result["train_runtime"],
                                 "test_accuracy": result["test_accuracy"], "eval_accuracy": result["eval_accuracy"]}
    return out


def speech_accuracy(job: dict[str, Any]) -> dict[str, Any]:
    """The speech demo's fine-tuning runs (its source model, target data and per-mode settings; one thread, as the
    demo trains), float32 then bf16 per mode: test WER and time. Pretrains the source model first if absent."""
    import torch

    import tunesuite
    from tunesuite.demos import asr

    root = Path(job["work"]) / "asr-demo"
    source, target = asr.corpora(root)
    model = asr.pretrain(source, root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out: dict[str, Any] = {"modes": {}}
    try:
        for mode in job["modes"]:
            for name in QUICK:
                start = time.perf_counter()
                result = tunesuite.finetune("asr", str(model), str(target), mode=mode, do_predict=True,
                                            output_dir=str(root / "precision" / f"{mode}-{name}"),
                                            overwrite_output_dir=True,
                                            **{**asr.COMMON, **asr.MODES[mode], **VARIANTS[name]})
                out["modes"].setdefault(mode, {})[name] = {"test_wer": result["test_wer"],
                                                           "wall_s": time.perf_counter() - start}
    finally:
        torch.set_num_threads(threads)
    return out


def table(results: dict[str, Any]) -> str:
    """The printed table: per variant, steady step time, the ratio to float32, compile and whole-run time."""
    rows = []
    for r in results.get("precision") or []:
        for name, v in r["variants"].items():
            rows.append([r["model"], f"{r['mode']} {name}", fmt(v["step_s_median"], ".0f", 1e3),
                         fmt(v["step_s_min"], ".0f", 1e3), fmt(v["ratio"], ".3f"), fmt(v["cpu_ratio"], ".3f"),
                         fmt(v["compile_s"], ".1f"),
                         fmt(v["whole_s"], ".1f"), fmt(v["whole_ratio"], ".3f")])
    parts = []
    if rows:
        parts += ["Precision on the CPU (one process, rounds rotated; vs fp32: median over rounds of step / fp32 step, "
                  "in wall and in CPU time; compile s: the first step's excess)",
                  text_table(["model", "mode, precision", "step ms", "min ms", "vs fp32", "CPU vs fp32", "compile s",
                          "run s", "run vs fp32"], rows)]
    for acc in results.get("precision_accuracy") or []:
        rows = [[name, "", fmt(v["test_accuracy"], ".4f"), fmt(v["eval_accuracy"], ".4f"),
                 fmt(v["train_runtime"], ".0f"), fmt(v["wall_s"], ".0f")] for name, v in acc["variants"].items()]
        parts += ["", f"Accuracy parity: the text demo's recipe, {acc['epochs']} epoch(s), whole runs",
                  text_table(["precision", "", "test acc", "eval acc", "train s", "wall s"], rows)]
    for speech in results.get("precision_speech") or []:
        rows = [[mode, fmt(v["fp32"]["test_wer"], ".3f"), fmt(v["bf16"]["test_wer"], ".3f"),
                 fmt(v["bf16"]["test_wer"] - v["fp32"]["test_wer"], "+.3f"), fmt(v["fp32"]["wall_s"], ".0f"),
                 fmt(v["bf16"]["wall_s"], ".0f")] for mode, v in speech["modes"].items()]
        parts += ["", "Accuracy parity: the speech demo's fine-tuning runs (one thread), fp32 vs bf16",
                  text_table(["mode", "fp32 WER", "bf16 WER", "difference", "fp32 s", "bf16 s"], rows)]
    return "\n".join(parts)


def main() -> None:
    import argparse
    import json

    from setups import ROOT

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setup", default="minilm")
    p.add_argument("--mode", default="lora")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="add bf16 + torch.compile (slower here; minutes to compile)")
    p.add_argument("--accuracy-epochs", type=int, default=0, help="also whole demo-recipe runs of N epochs each")
    p.add_argument("--speech-modes", nargs="*", default=[], help="also the speech demo's runs in these modes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "precision.json")
    args = p.parse_args()
    core.setup_process(args.threads)
    variants = [v for v in VARIANTS if args.compile or "compile" not in v]
    common = {"work": str((ROOT / "runs" / "bench").resolve()), "size": "small", "variants": variants}
    results: dict[str, Any] = {}
    if args.repeats:  # 0: the accuracy runs only
        results["precision"] = [step_times({**common, "setup": args.setup, "mode": args.mode, "steps": args.steps,
                                            "warmup": args.warmup, "repeats": args.repeats})]
    if args.accuracy_epochs:
        results["precision_accuracy"] = [accuracy({**common, "epochs": args.accuracy_epochs,
                                                   "variants": [v for v in variants if v in QUICK]})]
    if args.speech_modes:
        results["precision_speech"] = [speech_accuracy({**common, "modes": args.speech_modes})]
    print(table(results))
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
