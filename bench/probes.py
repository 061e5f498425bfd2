"""Measuring instruments: a step timer callback, peak memory (RSS from /proc, allocated bytes from glibc, CUDA),
data-pipeline timing."""

from __future__ import annotations

import contextlib
import ctypes
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, set_seed

from tunesuite.train.timing import peak_rss_mb as peak_mb
from tunesuite.train.timing import reset_peak_memory as reset_peak

MB = 2**20


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(TrainerCallback):
    """Timestamps of every optimizer step. on_step_begin comes after the batch is fetched, so begin -> end is
    compute (forward, backward, optimizer); end -> next end is the whole step, data loading and logging included.

    Wall time, and the process's CPU time: on a shared CPU machine a step that waits for a core costs wall time
    but no CPU time, so CPU time compares two runs fairly there (with one torch thread it equals the work).
    """

    def __init__(self) -> None:
        self.begins: list[tuple[float, float]] = []
        self.ends: list[tuple[float, float]] = []

    @staticmethod
    def _now() -> tuple[float, float]:
        _sync()
        return time.perf_counter(), time.process_time()

    def on_step_begin(self, args, state, control, **kwargs):
        self.begins.append(self._now())

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(self._now())

    def summary(self, warmup: int) -> dict[str, float]:
        """Medians over the steps after `warmup` (at least the first step is always skipped)."""
        skip = max(warmup, 1)
        if len(self.ends) <= skip:
            raise RuntimeError(f"only {len(self.ends)} steps ran; need more than {skip}")
        out: dict[str, float] = {"steps": len(self.ends) - skip}
        for clock, suffix in ((0, "s"), (1, "cpu_s")):
            ends, begins = [e[clock] for e in self.ends], [b[clock] for b in self.begins]
            steps = [b - a for a, b in zip(ends[skip - 1 :], ends[skip:], strict=False)]
            out[f"step_{suffix}"] = statistics.median(steps)
            out[f"compute_{suffix}"] = statistics.median(e - b for b, e in zip(begins[skip:], ends[skip:], strict=True))
        return out


# --- memory --------------------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def anon_mb() -> float:
    """Anonymous resident memory (heap, tensors): RSS without the file pages of memory-mapped datasets."""
    return _status_kb("RssAnon") / 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL("libc.so.6").mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _mallinfo2()


def allocated_mb() -> float | None:
    """Bytes the process has allocated and not yet freed (glibc heap in use + mmapped blocks), or None.

    The CPU counterpart of CUDA's memory_allocated: RSS also holds memory that is freed but kept by the
    allocator (heap fragmentation), which on a CPU can be half the peak."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return (info.uordblks + info.hblkhd) / MB


class PeakSampler:
    """Samples read() every `every_s` seconds in a thread; `peak` is the highest value seen (None if unreadable).

    Sampling can miss a peak shorter than the period; training's peak (the end of the forward pass, when
    every saved activation is alive) lasts far longer than that."""

    def __init__(self, read: Callable[[], float | None] = anon_mb, every_s: float = 0.001) -> None:
        self.read, self.every_s = read, every_s
        self.start = self.peak = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self._update()

    def _update(self) -> None:
        value = self.read()
        if value is not None and self.peak is not None:
            self.peak = max(self.peak, value)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._update()

    @property
    def growth(self) -> float | None:
        return None if self.peak is None else self.peak - self.start


def measure_memory(fn, sample_allocated: bool = False) -> tuple[Any, dict[str, float]]:
    """Run fn(); its result and memory: RSS before, peak RSS during, and growth (peak - before); CUDA max
    allocated on a GPU. sample_allocated: also the growth of allocated (live) bytes, sampled by a thread (off
    for timed runs, which the sampler would slow a little)."""
    before = rss_mb()
    clean = reset_peak()
    allocated = PeakSampler(allocated_mb) if sample_allocated else None
    with allocated or contextlib.nullcontext():
        result = fn()
    memory = {"rss_before_mb": before, "peak_rss_mb": peak_mb(), "peak_growth_mb": peak_mb() - before,
              "peak_is_local": clean, "peak_allocated_growth_mb": allocated.growth if allocated else None}
    if torch.cuda.is_available():
        memory["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / MB
    return result, memory


# --- data pipeline -------------------------------------------------------------------------------------------


def padding(batch: dict[str, Any]) -> tuple[int, int]:
    """(padded, total) input positions of a batch, from its attention mask."""
    mask = batch.get("attention_mask")
    if mask is None:
        return 0, 0
    return int(mask.numel() - mask.sum()), int(mask.numel())


def iterate_batches(trainer: Trainer, batches: int | None, seed: int = 0) -> dict[str, float]:
    """Time the Trainer's train dataloader alone (sampler, dataset transforms, collator) and count padding.

    The first batch is not timed (sampler set-up, first transform). batches=None reads one whole epoch.
    """
    set_seed(seed)
    loader = trainer.get_train_dataloader()
    iterator = iter(loader)
    first = next(iterator)
    padded, total = padding(first)
    fractions = [padded / total] if total else []
    count, start = 0, time.perf_counter()
    for batch in iterator:
        p, t = padding(batch)
        padded, total = padded + p, total + t
        fractions += [p / t] if t else []
        count += 1
        if batches is not None and count >= batches:
            break
    seconds = time.perf_counter() - start
    return {"data_s_per_batch": seconds / max(count, 1), "batches": count + 1,
            "padding_fraction": padded / total if total else None,
            "padding_fraction_batch_mean": statistics.mean(fractions) if fractions else None}
