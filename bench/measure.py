"""One measurement each: what a worker process runs and returns as a JSON-able dict."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import bare
import probes
import suite
from setups import EVAL_EXTRA_SYMBOLS, SETUPS, SIZES, build_w2v_model, eval_corpus, prepare
from transformers import Trainer, set_seed

from tunesuite import get_task


def _trainable(model: Any) -> float:
    params = list(model.parameters())
    return 100 * sum(p.numel() for p in params if p.requires_grad) / sum(p.numel() for p in params)


def _one_run(trainer: Trainer, warmup: int, data_batches: int | None, memory_run: bool = False) -> dict[str, Any]:
    """Train with a step timer; steady-state step times, memory, and (optionally) the data pipeline alone."""
    timer = probes.StepTimer()
    trainer.add_callback(timer)
    set_seed(0)
    _, memory = probes.measure_memory(trainer.train, sample_allocated=memory_run)
    result = {**timer.summary(warmup), **memory, "batch_size": trainer.args.train_batch_size,
              "trainable_percent": _trainable(trainer.model)}
    result["samples_per_s"] = result["batch_size"] / result["step_s"]
    if data_batches:
        result.update(probes.iterate_batches(trainer, data_batches))
    return result


def train(job: dict[str, Any]) -> dict[str, Any]:
    """Suite and bare baseline, alternating A B, B A, A B, ... in this process (neither side always goes first:
    a run right after another one can be a little faster or slower).

    A short suite run goes first, in the fresh process, for the mode's own peak memory; it also warms the
    process (allocator, kernels), which the first timed run would otherwise pay for. In-process (--quick),
    memory comes from the first timed run and mixes with earlier jobs.
    """
    setup, mode, work = SETUPS[job["setup"]], job["mode"], Path(job["work"])
    model, data = prepare(setup.name, work, job["size"])
    warmup, steps = job["warmup"], job["steps"]
    out, flags = work / "out" / f"{setup.name}-{mode}", {**setup.flags, **job.get("flags", {})}
    settings = suite.options(model, data, mode, out, warmup + steps + 1, **flags)
    short = suite.options(model, data, mode, out, warmup + 3, **flags)
    memory = None
    if job.get("memory_run", True):
        memory = _one_run(suite.build(setup.task, short)[0], warmup, None, memory_run=True)
        gc.collect()
    with_bare = mode in setup.bare_modes
    if with_bare:  # the bare side gets the same short warm-up run
        _one_run(bare.build(setup.task, model, data, mode, suite.training_args(setup.task, short)), warmup, None)
        gc.collect()
    runs: dict[str, list[dict[str, Any]]] = {"suite": [], "bare": []}
    for i in range(job["repeats"]):
        order = ("suite", "bare") if i % 2 == 0 else ("bare", "suite")
        for side in order if with_bare else ("suite",):
            start = time.perf_counter()
            if side == "suite":
                trainer = suite.build(setup.task, settings)[0]
            else:
                trainer = bare.build(setup.task, model, data, mode, suite.training_args(setup.task, settings))
            built = time.perf_counter() - start
            runs[side].append({**_one_run(trainer, warmup, steps if i == 0 else None), "build_s": built,
                               "round": i})
            del trainer
            gc.collect()
    pairs = list(zip(runs["suite"], runs["bare"], strict=False))  # round by round

    def ratio(key: str) -> float | None:
        return statistics.median(s[key] / b[key] for s, b in pairs) if pairs else None

    return {"setup": setup.name, "task": setup.task, "model": setup.label, "mode": mode, "memory_run": memory,
            "runs": runs, "suite": _summary(runs["suite"], memory or runs["suite"][0]),
            "bare": _summary(runs["bare"]) if runs["bare"] else None,
            "ratio": ratio("step_s"), "ratios": [s["step_s"] / b["step_s"] for s, b in pairs],
            "cpu_ratio": ratio("step_cpu_s"), "cpu_ratios": [s["step_cpu_s"] / b["step_cpu_s"] for s, b in pairs],
            "compute_ratio": ratio("compute_s"), "compute_cpu_ratio": ratio("compute_cpu_s")}


MEMORY_KEYS = ("peak_growth_mb", "peak_rss_mb", "peak_allocated_growth_mb", "cuda_max_allocated_mb")


def _summary(runs: list[dict[str, Any]], memory: dict[str, Any] | None = None) -> dict[str, Any]:
    """Median step times over the timed runs; data-pipeline figures from the first; memory from `memory`."""
    first = runs[0]
    out = {k: first.get(k) for k in ("trainable_percent", "batch_size", "data_s_per_batch", "padding_fraction")}
    out.update({k: memory.get(k) for k in MEMORY_KEYS} if memory else {})
    out["build_s"] = statistics.median(r["build_s"] for r in runs)  # data + model + Trainer set-up
    for key in ("step_s", "compute_s", "step_cpu_s", "compute_cpu_s"):
        out[key] = statistics.median(r[key] for r in runs)
    out["samples_per_s"] = first["batch_size"] / out["step_s"]
    return out


def asr_padding(job: dict[str, Any]) -> dict[str, Any]:
    """Padded fraction of the audio samples in the ASR task's train batches, length-grouped vs random."""
    work = Path(job["work"])
    model, data = prepare("w2v", work, job["size"])
    out: dict[str, Any] = {}
    for strategy in ("group_by_length", "random"):
        settings = suite.options(model, data, "full", work / "out" / "asr-padding", 1,
                            train_sampling_strategy=strategy)
        trainer = suite.build("asr", settings)[0]
        out[strategy] = probes.iterate_batches(trainer, None)  # one whole epoch
    out["batch_size"] = trainer.args.train_batch_size
    return out


def eval_memory(job: dict[str, Any]) -> dict[str, Any]:
    """Memory growth of trainer.evaluate() on `rows` utterances; reduced=False keeps the raw logits (no
    preprocess_logits_for_metrics), as a plain Trainer does, for contrast."""
    work, rows = Path(job["work"]), job["rows"]
    model = work / job["size"] / "w2v-eval" / "model"
    if not (model / "config.json").exists():
        build_w2v_model(model, SIZES[job["size"]], extra_symbols=EVAL_EXTRA_SYMBOLS)
    data = eval_corpus(work / job["size"], job["max_rows"])
    settings = suite.options(model, data, "full", work / "out" / "eval-memory", 1, max_eval_samples=rows)
    trainer = suite.build("asr", settings)[0]
    if not job["reduced"]:
        trainer.preprocess_logits_for_metrics = None
    held: dict[str, float] = {}
    compute = trainer.compute_metrics

    def measured(eval_pred: Any) -> dict[str, float]:  # what the loop accumulated, just before metrics
        held["predictions_mb"] = (eval_pred.predictions.nbytes + eval_pred.label_ids.nbytes) / probes.MB
        held["anon_at_metrics_mb"] = probes.anon_mb()
        return compute(eval_pred)

    trainer.compute_metrics = measured
    gc.collect()
    start = time.perf_counter()
    with probes.PeakSampler(probes.anon_mb) as sampler:
        metrics, memory = probes.measure_memory(trainer.evaluate)
    return {"rows": rows, "reduced": job["reduced"], "seconds": time.perf_counter() - start, **memory, **held,
            "anon_peak_growth_mb": sampler.growth, "wer": metrics.get("eval_wer")}


def cache_flag_exists() -> bool:
    from tunesuite.modes.freeze import FrozenArgs

    return "cache_features" in {f.name for f in fields(FrozenArgs)}


def feature_cache(job: dict[str, Any]) -> dict[str, Any]:
    """MiniLM frozen (--trainable-layers 0: head only, the full cache; 1: the top layer too, the partial cache),
    --cache-features never vs auto: time per epoch and accuracy (a whole tunesuite run)."""
    import tunesuite

    work, setting, layers = Path(job["work"]), job["cache"], job.get("layers", 0)
    model, data = prepare("minilm", work, job["size"])
    start = time.perf_counter()
    result = tunesuite.finetune("text-classification", str(model), str(data), mode="frozen", cache_features=setting,
                                output_dir=str(work / "out" / f"cache-{setting}-{layers}"), overwrite_output_dir=True,
                                num_train_epochs=job["epochs"], trainable_layers=layers,
                                **({"max_train_samples": job["rows"]} if job.get("rows") else {}),
                                save_strategy="no", eval_strategy="no", disable_tqdm=True, seed=0)
    wall = time.perf_counter() - start
    extract = result.get("feature_cache_seconds", 0.0)  # the one pass of the backbone, when cached
    training = result.get("train_cached_runtime", result["train_runtime"])  # train_runtime: the whole run
    return {"cache_features": setting, "trainable_layers": layers, "epochs": job["epochs"], "wall_s": wall,
            "extract_s": extract, "epoch_s": training / job["epochs"],
            "epoch_with_extract_s": result["train_runtime"] / job["epochs"],
            "eval_accuracy": result.get("eval_accuracy"), "test_accuracy": result.get("test_accuracy")}


def asr_preprocessing(job: dict[str, Any]) -> dict[str, Any]:
    """Decode + resample + feature extraction of the speech demo's source corpus (espeak-ng, 22.05 kHz wavs to
    16 kHz features), serial and with --preprocessing-num-workers 2, each into an empty cache; then again from the
    cache, as a second run or a resume reads it."""
    import shutil
    import tempfile

    from tunesuite import data
    from tunesuite.demos.asr import corpora, new_model

    work = Path(job["work"]) / "speech"
    if shutil.which("espeak-ng") is None:
        return {"skipped": "espeak-ng is not installed"}
    source, _ = corpora(work)
    model = work / "init"
    if not (model / "config.json").exists():
        new_model(model)
    spec = get_task("asr")
    out: dict[str, Any] = {"rows": None}
    for workers in [1, *job["workers"]]:  # the first pass only warms up (file cache, librosa's resampler)
        cache = Path(tempfile.mkdtemp(dir=work))
        flags = {"cache_dir": cache, **({"preprocessing_num_workers": workers} if workers > 1 else {})}
        cfg = suite.run_config("asr", suite.options(model, source, "full", work / "out", 1, **flags))
        timings = []
        for _ in ("cold", "cached"):
            start = time.perf_counter()
            raw = data.load_raw(cfg.data.dataset, None, cfg.model.cache_dir)
            prepared = spec.data.preprocess(raw, spec.data.load_processor(str(model), cfg), cfg)
            timings.append(time.perf_counter() - start)
        out["rows"] = len(prepared.train) + len(prepared.eval or [])
        out[f"workers_{workers}"] = {"cold_s": timings[0], "cached_s": timings[1]}
        shutil.rmtree(cache, ignore_errors=True)
    return out
