"""Turn measurements into the summary (ratios against the goals) and the printed tables (the parts' own tables,
such as partial.py's and precision.py's, come in from the driver: this module imports no other script)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from core import fmt, text_table

GOALS = {"suite_vs_bare": "<= 1.03", "memory_vs_full": "<= 0.7 (lora, prompt; MiniLM)",
         "asr_padding_grouped": "<= 0.10", "feature_cache_speedup": ">= 5", "partial_cache_speedup": ">= 4",
         "bf16_vs_fp32": "<= 0.5 (MiniLM LoRA, equal accuracy)"}


def describe(job: dict[str, Any]) -> str:
    kind = job["kind"]
    if kind == "train":
        return f"train {job['setup']} {job['mode']} ({job['repeats']} x suite/bare, {job['steps']} steps)"
    if kind == "eval_memory":
        return f"eval memory, {job['rows']} rows, logits {'reduced' if job['reduced'] else 'kept'}"
    if kind == "feature_cache":
        return f"MiniLM frozen --trainable-layers {job.get('layers', 0)}, --cache-features {job['cache']}"
    if kind == "precision_speech":
        return f"precision parity, the speech demo's runs: {', '.join(job['modes'])}, fp32 vs bf16"
    if kind == "precision":
        return f"precision {job['setup']} {job['mode']}: {' vs '.join(job['variants'])} ({job['repeats']} rounds)"
    return kind.replace("_", " ")


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def memory_vs_full(rows: list[dict[str, Any]], key: str = "peak_growth_mb") -> dict[str, dict[str, float]]:
    """Per setup: each mode's peak memory growth in training (RSS by default) as a ratio to full fine-tuning's."""
    full = {r["setup"]: r["suite"].get(key) for r in rows if r["mode"] == "full"}
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if full.get(r["setup"]) and r["suite"].get(key) is not None:
            out.setdefault(r["setup"], {})[r["mode"]] = r["suite"][key] / full[r["setup"]]
    return out


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    rows = [r for r in results["train"] if r["ratio"] is not None]
    summary: dict[str, Any] = {"goals": GOALS}
    for key, name in (("ratio", "suite_vs_bare"), ("cpu_ratio", "suite_vs_bare_cpu")):
        by_mode: dict[str, list[float]] = {}
        for r in rows:
            by_mode.setdefault(r["mode"], []).append(r[key])
        summary[name] = {f"{r['setup']}/{r['mode']}": r[key] for r in rows}
        summary[name + "_median_by_mode"] = {m: _median(v) for m, v in by_mode.items()}
        summary[name + "_median"] = _median([r[key] for r in rows])
    summary["memory_vs_full"] = memory_vs_full(results["train"])
    summary["allocated_vs_full"] = memory_vs_full(results["train"], "peak_allocated_growth_mb")
    padding = results.get("asr_padding")
    if padding:
        summary["asr_padding"] = {k: padding[k]["padding_fraction"] for k in ("group_by_length", "random")}
    prep = results.get("asr_preprocessing")
    if prep and "skipped" not in prep:
        serial, parallel = prep["workers_1"], prep.get("workers_2")
        summary["asr_preprocessing_s"] = {"serial": serial["cold_s"], "2 workers": parallel and parallel["cold_s"],
                                          "from cache": serial["cached_s"]}
    evals = results.get("eval_memory") or []
    if evals:
        summary["eval_memory_growth_mb"] = {f"{e['rows']} rows, {'reduced' if e['reduced'] else 'raw logits'}":
                                            e["anon_peak_growth_mb"] for e in evals}
    cache = [c for c in results.get("feature_cache") or [] if "skipped" not in c]
    for layers, name in ((0, "feature_cache"), (1, "partial_cache")):
        rows = [c for c in cache if c.get("trainable_layers", 0) == layers]
        never = _median([c["epoch_s"] for c in rows if c["cache_features"] == "never"])
        auto = _median([c["epoch_s"] for c in rows if c["cache_features"] == "auto"])
        auto_all = _median([c["epoch_with_extract_s"] for c in rows if c["cache_features"] == "auto"])
        if rows:
            summary[f"{name}_speedup"] = never / auto if never and auto else None
            summary[f"{name}_speedup_with_extraction"] = never / auto_all if never and auto_all else None
    for r in results.get("precision") or []:
        for variant, key in (("bf16", "bf16_vs_fp32"), ("bf16+sdpa", "bf16_sdpa_vs_fp32"),
                             ("bf16+compile", "bf16_compile_vs_fp32")):
            if variant in r["variants"]:
                summary.setdefault(key, {})[f"{r['setup']}/{r['mode']}"] = r["variants"][variant]["ratio"]
    for r in results.get("partial_cache") or []:
        summary["partial_cache_epoch_speedup"] = {"wall": r["speedup_wall"], "cpu": r["speedup_cpu"],
                                                  "training alone": r["speedup_training_alone_wall"],
                                                  "ideal": r["ideal_training_alone_wall"]}
    for acc in results.get("precision_accuracy") or []:
        summary["precision_accuracy"] = {k: v["test_accuracy"] for k, v in acc["variants"].items()}
    for speech in results.get("precision_speech") or []:
        summary["precision_speech_wer_bf16_minus_fp32"] = {
            mode: v["bf16"]["test_wer"] - v["fp32"]["test_wer"] for mode, v in speech["modes"].items()}
    if not cache and results.get("feature_cache"):
        summary["feature_cache_speedup"] = results["feature_cache"][0]["skipped"]
    return summary


def train_table(results: dict[str, Any]) -> str:
    ratios = memory_vs_full(results["train"])
    allocated = memory_vs_full(results["train"], "peak_allocated_growth_mb")
    header = ["model", "mode", "train %", "step ms", "bare ms", "suite/bare", "CPU s/b", "samples/s", "data ms",
              "pad %", "peak MB", "mem/full", "alloc MB", "alloc/full", "setup s"]
    rows = []
    for r in results["train"]:
        s, b = r["suite"], r["bare"] or {}
        setup = fmt(s.get("build_s"), ".1f") + ("/" + fmt(b["build_s"], ".1f") if b else "")
        rows.append([r["model"], r["mode"], fmt(s["trainable_percent"], ".2f"), fmt(s["step_s"], ".1f", 1e3),
                     fmt(b.get("step_s"), ".1f", 1e3), fmt(r["ratio"], ".3f"), fmt(r.get("cpu_ratio"), ".3f"),
                     fmt(s["samples_per_s"], ".1f"), fmt(s["data_s_per_batch"], ".1f", 1e3),
                     fmt(s["padding_fraction"], ".1f", 100), fmt(s["peak_growth_mb"], ".0f"),
                     fmt(ratios.get(r["setup"], {}).get(r["mode"]), ".2f"),
                     fmt(s.get("peak_allocated_growth_mb"), ".0f"),
                     fmt(allocated.get(r["setup"], {}).get(r["mode"]), ".2f"), setup])
    return text_table(header, rows)


def tables(results: dict[str, Any], extras: Iterable[str] = ()) -> str:
    """Every table, the parts' `extras` (empty ones left out) just before the summary against the goals."""
    parts = ["Training (medians over steady-state steps; suite/bare: wall-time ratio, CPU s/b: CPU-time ratio, "
             "each the median over A B / B A rounds; peak MB: RSS growth in training, alloc MB: growth of allocated "
             "bytes, without the allocator's freed-but-kept memory)", train_table(results)]
    padding = results.get("asr_padding")
    if padding:
        rows = [[k, "", fmt(padding[k]["padding_fraction"], ".1f", 100),
                 fmt(padding[k]["padding_fraction_batch_mean"], ".1f", 100), str(padding[k]["batches"]),
                 fmt(padding[k]["data_s_per_batch"], ".1f", 1e3)] for k in ("group_by_length", "random")]
        parts += ["", f"ASR padding (one epoch, batch {padding['batch_size']})",
                  text_table(["sampling", "", "padded %", "batch mean %", "batches", "data ms/batch"], rows)]
    prep = results.get("asr_preprocessing")
    if prep and "skipped" not in prep:
        rows = [[key.replace("workers_", ""), "", fmt(v["cold_s"], ".1f"), fmt(v["cached_s"], ".2f")]
                for key, v in prep.items() if key.startswith("workers_")]
        parts += ["", f"ASR preprocessing (decode, resample 22.05 -> 16 kHz, features; {prep['rows']} espeak-ng "
                      "utterances)", text_table(["workers", "", "empty cache s", "cached s"], rows)]
    elif prep:
        parts += ["", f"ASR preprocessing: skipped ({prep['skipped']})"]
    evals = results.get("eval_memory") or []
    if evals:
        rows = [[str(e["rows"]), "reduced" if e["reduced"] else "raw logits", fmt(e["anon_peak_growth_mb"], ".1f"),
                 fmt(e["peak_growth_mb"], ".1f"), fmt(e["predictions_mb"], ".2f"), fmt(e["seconds"], ".1f")]
                for e in evals]
        parts += ["", "Evaluation memory (ASR, trainer.evaluate)",
                  text_table(["rows", "predictions", "heap peak +MB", "RSS peak +MB", "held MB", "seconds"], rows)]
    cache = results.get("feature_cache") or []
    if cache and "skipped" not in cache[0]:
        rows = [[c["cache_features"], str(c.get("trainable_layers", 0)), str(c["epochs"]), fmt(c["epoch_s"], ".2f"),
                 fmt(c["extract_s"], ".1f"),
                 fmt(c["epoch_with_extract_s"], ".2f"), fmt(c["wall_s"], ".1f"), fmt(c["eval_accuracy"], ".4f"),
                 fmt(c["test_accuracy"], ".4f")] for c in cache]
        parts += ["", "MiniLM frozen, --cache-features (whole runs: train, save, evaluate eval + test; layers: "
                      "--trainable-layers, 1: the partial cache)",
                  text_table(["setting", "layers", "epochs", "s/epoch", "extract s", "s/epoch incl. extract", "wall s",
                          "eval acc", "test acc"], rows)]
    elif cache:
        parts += ["", f"MiniLM frozen feature cache: skipped ({cache[0]['skipped']})"]
    for extra in extras:
        parts += ["", extra] if extra else []
    summary = results.get("summary", {})
    parts += ["", "Against the goals " + ", ".join(f"{k} {v}" for k, v in GOALS.items())]
    for key in ("suite_vs_bare_median_by_mode", "suite_vs_bare_cpu_median_by_mode", "memory_vs_full",
                "allocated_vs_full", "asr_padding", "asr_preprocessing_s",
                "eval_memory_growth_mb", "feature_cache_speedup", "feature_cache_speedup_with_extraction",
                "partial_cache_speedup", "partial_cache_speedup_with_extraction", "partial_cache_epoch_speedup",
                "bf16_vs_fp32", "bf16_sdpa_vs_fp32", "bf16_compile_vs_fp32", "precision_accuracy",
                "precision_speech_wer_bf16_minus_fp32"):
        if key in summary:
            parts.append(f"  {key}: {_round(summary[key])}")
    if "gpu_mfu" not in summary:  # bench/gpu.py runs on a CUDA machine only
        parts.append("  gpu_mfu: not measured (no GPU in this run; python bench/gpu.py gives bf16 ViT-base and "
                     "wav2vec2-base MFU)")
    return "\n".join(parts)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value
