"""GPU throughput: bf16 training of ViT-base- and wav2vec2-base-sized models built from configs (no download).

    python bench/gpu.py                 # on a CUDA machine: samples/s and model-FLOPs utilisation (MFU)
    python bench/gpu.py --tiny          # CPU smoke run with tiny configs (no MFU unless --peak-tflops)

FLOPs per step are counted once with torch's FlopCounterMode (forward + backward), so MFU = counted FLOPs /
step time / the device's dense bf16 peak. Synthetic inputs; a plain loop (bf16 autocast, fused AdamW on CUDA).
Never required: the CPU harness is bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}


def vit(tiny: bool) -> tuple[torch.nn.Module, Callable]:
    from transformers import ViTConfig, ViTForImageClassification

    size = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64) if tiny else {}  # the defaults are ViT-base/16 at 224x224
    config = ViTConfig(num_labels=10, **size)

    def batch(n: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.randn(n, 3, config.image_size, config.image_size, device=device),
                "labels": torch.randint(0, 10, (n,), device=device)}

    return ViTForImageClassification(config), batch


def wav2vec2(tiny: bool, seconds: float = 5.0) -> tuple[torch.nn.Module, Callable]:
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=(16, 16), conv_kernel=(10, 4), conv_stride=(5, 4), num_conv_pos_embeddings=8,
                num_conv_pos_embedding_groups=4) if tiny else {}  # the defaults are wav2vec2-base
    config = Wav2Vec2Config(vocab_size=32, ctc_loss_reduction="mean", mask_time_prob=0.0, **size)
    samples = int(16000 * (0.5 if tiny else seconds))

    def batch(n: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {"input_values": torch.randn(n, samples, device=device),
                "labels": torch.randint(1, 32, (n, samples // 1600), device=device)}  # ~10 characters/second

    return Wav2Vec2ForCTC(config), batch


MODELS = {"vit-base": (vit, 64), "wav2vec2-base": (wav2vec2, 16)}


def apply_mode(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        head = "classifier" if hasattr(model, "classifier") else "lm_head"
        return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                modules_to_save=[head]))
    if hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    return model


def step_fn(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, dtype: torch.dtype):
    def step(batch: dict[str, torch.Tensor]) -> None:
        with torch.autocast(device.type, dtype=dtype):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, mode: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    build, default_batch = MODELS[name]
    model, make_batch = build(args.tiny)
    model = apply_mode(model, mode).to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=device.type == "cuda")
    step = step_fn(model, optimizer, device, torch.bfloat16)
    batch_size = args.batch_size or (4 if args.tiny else default_batch)
    batch = make_batch(batch_size, device)
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(batch)
    flops = counter.get_total_flops()
    for _ in range(args.warmup):
        step(batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        sync(device)
        start = time.perf_counter()
        step(batch)
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items()
                                     if device.type == "cuda" and k in torch.cuda.get_device_name()), None)
    return {"model": name, "mode": mode, "batch_size": batch_size, "step_s": seconds,
            "samples_per_s": batch_size / seconds, "tflops_per_step": flops / 1e12,
            "achieved_tflops": flops / seconds / 1e12, "mfu": flops / seconds / (peak * 1e12) if peak else None,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "trainable_percent": 100 * sum(p.numel() for p in trainable) / sum(p.numel() for p in model.parameters()),
            "cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny configs: a CPU smoke run")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--modes", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    p.add_argument("--batch-size", type=int, help="default: 64 (ViT), 16 x 5 s (wav2vec2); tiny: 4")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the device (default: known GPUs)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "bench" / "gpu.json")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rows = [measure(name, mode, args, device) for name in args.models for mode in args.modes]
    print(f"{'model':<15}{'mode':<6}{'batch':>6}{'step ms':>10}{'samples/s':>11}{'GFLOP/step':>11}{'TFLOP/s':>9}"
          f"{'MFU':>7}{'peak MB':>9}")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        memory = f"{r['cuda_max_allocated_mb']:.0f}" if r["cuda_max_allocated_mb"] is not None else "-"
        print(f"{r['model']:<15}{r['mode']:<6}{r['batch_size']:>6}{1e3 * r['step_s']:>10.1f}{r['samples_per_s']:>11.1f}"
              f"{1e3 * r['tflops_per_step']:>11.3f}{r['achieved_tflops']:>9.2f}{mfu:>7}{memory:>9}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    args.out.write_text(json.dumps({"device": device_name, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
