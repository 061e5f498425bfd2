"""The benchmark harness runs (--quick: tiny models, a few steps) and writes its tables and JSON.

Only the shape of the output is checked: never a time, a memory figure or a ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
MODES = {"full", "frozen", "lora", "prompt"}


def test_quick_benchmark_writes_table_and_json(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--work", str(tmp_path / "work"),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-3000:]
    for title in ("Training", "suite/bare", "CPU s/b", "samples/s", "data ms", "peak MB", "alloc MB", "ASR padding",
                  "Evaluation memory", "Precision on the CPU", "vs fp32",
                  "the partial cache vs the normal path"):
        assert title in done.stdout, title

    results = json.loads(out.read_text())
    assert {"meta", "train", "asr_padding", "eval_memory", "feature_cache", "summary"} <= results.keys()
    assert {"date", "device", "command", "torch", "transformers"} <= results["meta"].keys()
    rows = results["train"]
    assert {r["setup"] for r in rows} == {"bert", "vit", "resnet", "w2v"}
    assert {r["mode"] for r in rows} == MODES
    for row in rows:
        assert {"step_s", "step_cpu_s", "compute_s", "samples_per_s", "peak_growth_mb", "trainable_percent",
                "data_s_per_batch", "build_s"} <= row["suite"].keys()
        assert 0 < row["suite"]["trainable_percent"] <= 100
        if row["bare"] is not None:  # full, frozen, lora everywhere; prompt only for text (peft)
            assert {"step_s", "trainable_percent"} <= row["bare"].keys()
            assert row["ratio"] is not None and row["cpu_ratio"] is not None
            assert row["bare"]["trainable_percent"] == row["suite"]["trainable_percent"]  # the same set trains
    assert {r["mode"] for r in rows if r["bare"] is None} == {"prompt"}
    assert {"group_by_length", "random"} <= results["asr_padding"].keys()
    assert sorted((e["rows"], e["reduced"]) for e in results["eval_memory"]) == [
        (40, False), (40, True), (160, False), (160, True)]
    assert {"suite_vs_bare", "suite_vs_bare_cpu", "memory_vs_full", "asr_padding",
            "eval_memory_growth_mb", "bf16_vs_fp32"} <= results["summary"].keys()
    (partial,) = results["partial_cache"]  # the tiny BERT, frozen with its top layer: uncached vs cached, paired
    assert partial["setup"] == "bert" and len(partial["runs"]["cached"]) == len(partial["runs"]["uncached"]) == 1
    assert partial["runs"]["cached"][0]["extract_s"] > 0 and partial["speedup_cpu"] > 0
    uncached, cached = partial["runs"]["uncached"][0], partial["runs"]["cached"][0]
    assert 0 < uncached["below_stack_s"] < uncached["train_s"] and cached["below_stack_s"] > 0  # timed, each side
    assert partial["ideal_training_alone_wall"] > 1
    (precise,) = results["precision"]  # the quick run: tiny BERT LoRA, float32 vs bf16 (no compile), one round
    assert precise["setup"] == "bert" and set(precise["variants"]) == {"fp32", "bf16"}
    assert precise["variants"]["fp32"]["ratio"] == 1.0 and precise["variants"]["bf16"]["ratio"] > 0


def test_allocated_memory_probe_sees_a_tensor_come_and_go():
    import pytest
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    import probes

    if probes.allocated_mb() is None:
        pytest.skip("not glibc: no mallinfo2 (the bench then reports RSS only)")
    with probes.PeakSampler(probes.allocated_mb) as sampler:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB
        held = probes.allocated_mb()
        del block
    assert sampler.growth >= 60 and held - sampler.start >= 60
    assert probes.allocated_mb() - sampler.start < 30  # freed again


def test_activation_accounting_counts_what_backward_keeps():
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from activations import saved_tensors

    layer = torch.nn.Linear(64, 32)
    weights = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    x = torch.randn(16, 64, requires_grad=True)  # as the output of an earlier layer
    by_op, weight_bytes = saved_tensors(torch.relu(layer(x)).sum(), weights)
    assert by_op["Addmm.mat1"] == 16 * 64 * 4  # the input, for the weight's gradient
    assert by_op["Relu.result"] == 16 * 32 * 4
    assert weight_bytes == 64 * 32 * 4  # the weight, for the input's gradient: counted apart
    layer.requires_grad_(False)  # frozen layer: only the input's gradient is needed, so the input is not kept
    by_op, _ = saved_tensors(torch.relu(layer(x)).sum(), weights)
    assert "Addmm.mat1" not in by_op and by_op["Relu.result"] == 16 * 32 * 4


def test_gpu_script_smoke_runs_on_cpu(tmp_path):
    """bench/gpu.py is for a CUDA machine; --tiny runs its whole path on the CPU (FLOP counting, both modes)."""
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--steps", "3", "--warmup", "1",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(r["model"], r["mode"]) for r in rows} == {(m, k) for m in ("vit-base", "wav2vec2-base")
                                                        for k in ("full", "lora")}
    for row in rows:
        assert row["tflops_per_step"] > 0 and row["samples_per_s"] > 0
        assert row["trainable_percent"] < 100 if row["mode"] == "lora" else row["trainable_percent"] > 90
