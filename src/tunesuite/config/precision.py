"""The run's precision (`--precision auto|fp32|bf16|fp16`, auto by default), and bf16 on a machine without a GPU:
the Trainer's own CPU autocast (TrainingArguments.use_cpu), no extra flag.

auto picks bf16 where the hardware runs it natively (a CPU with AVX-512 BF16 or AMX, a GPU that supports it) and
the mode keeps its accuracy in bf16 on the model's family (registry.Mode.bf16_loss); fp32 elsewhere. A MiniLM
LoRA step takes about half the fp32 time in bf16 at equal accuracy (bench/precision.py). `--bf16` and `--fp16`
keep working and win over auto. $TUNESUITE_PRECISION (fp32, bf16, fp16) replaces auto on a machine: the test
suite sets fp32, so its exact numbers are the same on machines with and without bf16.

transformers refuses `--bf16` when it finds no bf16 GPU unless `use_cpu` is set; on such a machine `--bf16`
implies it (a default, so an explicit `--use-cpu false` still wins and fails as transformers says). Under CPU
autocast the matrix products run in bfloat16 while the losses stay float32 (autocast's float32 list holds
cross-entropy, CTC and the log-softmax the CTC head asks for in float32).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from tunesuite import registry
from tunesuite.errors import TunesuiteError

log = logging.getLogger("tunesuite")
BF16_FLAGS = ("bf16", "bf16_full_eval")
HALF_FLAGS = ("bf16", "fp16")  # TrainingArguments' own precision switches
AUTO_CHOICES = {"auto", "fp32", "bf16", "fp16"}
ENV = "TUNESUITE_PRECISION"  # replaces auto on this machine (the tests pin fp32)


@dataclass(frozen=True)
class Precision:
    """What a run trains in, why, and the TrainingArguments defaults that give it."""

    name: str  # fp32, bf16 or fp16
    why: str
    flags: dict[str, Any] = field(default_factory=dict)


def decide(requested: str, user: dict[str, Any], mode: registry.Mode, model_type: str | None,
           accelerator: bool) -> Precision:
    """The precision of a run: what --precision, --bf16 or --fp16 ask, else for auto what this machine runs
    natively, unless the mode loses accuracy in bf16 on this family."""
    if requested not in AUTO_CHOICES:
        raise TunesuiteError(f"--precision {requested}: choose one of auto, fp32, bf16, fp16")
    asked = [flag for flag in HALF_FLAGS if user.get(flag)]
    if asked:  # --bf16 / --fp16 win over auto and over the machine's pin
        if requested not in ("auto", asked[0]):
            raise TunesuiteError(f"--precision {requested} and --{asked[0]} disagree; pass one of them")
        return _half(asked[0], f"--{asked[0]} asked", accelerator)
    if any(user.get(flag) is False for flag in HALF_FLAGS) and requested == "auto":
        return Precision("fp32", "--bf16 false asked")
    pinned = os.environ.get(ENV, "")
    by = f"--precision {requested}"
    if requested == "auto" and pinned:
        if pinned not in AUTO_CHOICES - {"auto"}:
            raise TunesuiteError(f"${ENV}={pinned}: set it to fp32, bf16 or fp16 (or unset it for auto)")
        requested, by = pinned, f"${ENV}={pinned}"
    if requested != "auto":
        return _half(requested, f"{by} asked", accelerator) if requested != "fp32" else \
            Precision("fp32", f"{by} asked")
    loss = mode.bf16_loss(registry.find_family(model_type or "")) if mode.bf16_loss else None
    if loss:
        return Precision("fp32", f"auto: mode {mode.name} keeps fp32 here ({loss})")
    if accelerator:
        if _gpu_bf16():
            return Precision("bf16", "auto: this GPU runs bf16 natively", {"bf16": True})
        return Precision("fp32", "auto: this accelerator has no native bf16")
    if native_bf16():
        return Precision("bf16", "auto: this CPU multiplies bf16 natively (AVX-512 BF16 / AMX)",
                         {"bf16": True, "use_cpu": True})
    return Precision("fp32", "auto: this CPU has no native bf16 (no AVX-512 BF16 / AMX)")


def _half(name: str, why: str, accelerator: bool) -> Precision:
    flags: dict[str, Any] = {name: True}
    if name == "bf16" and not accelerator:
        flags["use_cpu"] = True
    return Precision(name, why + ("" if accelerator or name != "bf16" else
                                 (", CPU autocast" + ("" if native_bf16() else ", emulated: slower than fp32"))),
                     flags)


def _gpu_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def model_type_of(model: str | None) -> str | None:
    """config.model_type of a model folder or Hub id (its config only), None when it cannot be read here."""
    if not model:
        return None
    try:
        from transformers import AutoConfig

        return str(AutoConfig.from_pretrained(model).model_type)
    except (OSError, ValueError, KeyError):
        return None


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


LONG_ENCODER_INPUT = 1000  # positions: an encoder always fed this many (Whisper's 1500 frames) prefers sdpa


def attention_choice(requested: str, args: Any, model: str | None = None) -> tuple[str | None, str]:
    """(attn_implementation for from_pretrained or None for the model's default, the reason in a few words):
    what --attn-implementation names, or for auto, eager when training in bf16 on the CPU. There, sdpa's
    backward in bfloat16 and its dropout (its fused CPU kernel has none, so it falls back to an unfused path)
    cost more than the plain matmul-softmax-matmul: a MiniLM LoRA step (batch 16 x 128) took 0.43x the float32
    time with eager, 0.53x with sdpa (bench/precision.py). Not for an encoder-decoder whose encoder always reads a
    long input (`model`'s config: Whisper's 1500 frames): its encoder passes (the encoder cache, evaluation,
    generation) took 0.75x eager's time with sdpa, where a decoder training step took 1.13x (tiny.en, bf16, one
    thread, 2026-12-05)."""
    if requested != "auto":
        return requested, "--attn-implementation"
    if args.bf16 and args.use_cpu:
        if _long_encoder_input(model):
            return "sdpa", "auto: faster than eager for an encoder fed a fixed long input"
        return "eager", "auto: faster than sdpa for bf16 on a CPU"
    return None, "the model's default: sdpa where it has it"


def _long_encoder_input(model: str | None) -> bool:
    """`model`'s config names an encoder-decoder whose encoder reads LONG_ENCODER_INPUT positions or more; False
    when it cannot be read here (loading the model then says why)."""
    if not model:
        return False
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError, KeyError):
        return False
    positions = getattr(config, "max_source_positions", 0) or 0
    return bool(getattr(config, "is_encoder_decoder", False)) and positions >= LONG_ENCODER_INPUT


def attention_kwargs(requested: str, args: Any, model: str | None = None) -> dict[str, str]:
    """from_pretrained's keyword for this run's attention (attention_choice)."""
    chosen, why = attention_choice(requested, args, model)
    if chosen is None:
        return {}
    if requested == "auto":
        other = "eager" if chosen == "sdpa" else "sdpa"
        log.info("attention: %s (%s; --attn-implementation %s picks %s)", chosen, why, other, other)
    return {"attn_implementation": chosen}
