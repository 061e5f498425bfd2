"""bf16 on a machine without a GPU: the Trainer's own CPU autocast (TrainingArguments.use_cpu), no extra flag.

transformers refuses `--bf16` when it finds no bf16 GPU unless `use_cpu` is set; on such a machine `--bf16`
implies it (a default, so an explicit `--use-cpu false` still wins and fails as transformers says). Under CPU
autocast the matrix products run in bfloat16 while the losses stay float32 (autocast's float32 list holds
cross-entropy, CTC and the log-softmax the CTC head asks for in float32).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("tunesuite")
BF16_FLAGS = ("bf16", "bf16_full_eval")


def cpu_defaults(user: dict[str, Any]) -> dict[str, Any]:
    """TrainingArguments defaults for a machine with no accelerator, given what the user asked for."""
    return {"use_cpu": True} if any(user.get(flag) for flag in BF16_FLAGS) else {}


def native_bf16() -> bool:
    """The CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX), as oneDNN reports it."""
    import torch  # here: `--help` reads the config module without torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def log_precision(args: Any) -> None:
    """Say what a bf16 run on the CPU gets: native bf16 or a slow emulation."""
    if not (args.bf16 and args.use_cpu):
        return
    if native_bf16():
        log.info("bf16 on CPU: torch.autocast(cpu, bfloat16); this CPU has native bf16 (oneDNN)")
    else:
        log.warning("bf16 on CPU: this CPU has no native bf16 (no AVX-512 BF16 / AMX): expect it slower than fp32")


def attention_kwargs(requested: str, args: Any) -> dict[str, str]:
    """from_pretrained's attn_implementation for this run: what --attn-implementation names, or for auto, eager
    when training in bf16 on the CPU. There, sdpa's backward in bfloat16 and its dropout (its fused CPU kernel has
    none, so it falls back to an unfused path) cost more than the plain matmul-softmax-matmul: a MiniLM LoRA step
    (batch 16 x 128) took 0.43x the float32 time with eager, 0.53x with sdpa (bench/precision.py)."""
    if requested != "auto":
        return {"attn_implementation": requested}
    if args.bf16 and args.use_cpu:
        log.info("attention: eager (faster than sdpa for bf16 training on a CPU; --attn-implementation sdpa "
                 "keeps sdpa)")
        return {"attn_implementation": "eager"}
    return {}
