"""Decode and resample audio with soundfile + librosa (no torchcodec, no ffmpeg).

An audio cell can be a file path (relative paths resolve against the manifest's folder), raw bytes, a Hub
dataset's undecoded `{"bytes", "path"}`, a decoded `{"array", "sampling_rate"}`, or a bare array (taken to be
at the target rate already). Everything comes out as mono float32 at the rate the feature extractor wants.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile as sf

from tunesuite.errors import TunesuiteError

log = logging.getLogger("tunesuite")


class AudioError(TunesuiteError):
    """An audio cell that cannot be read; `source` names the file (or says what the cell held)."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: cannot read audio ({reason})")
        self.source, self.reason = source, reason


def describe(value: Any, base_dir: Path | None = None) -> str:
    """A short name for an audio cell, for logs, errors and predictions.jsonl."""
    if isinstance(value, dict):
        value = value.get("path") or ("<decoded array>" if value.get("array") is not None else "<audio bytes>")
    if isinstance(value, (bytes, bytearray)):
        return "<audio bytes>"
    if isinstance(value, (str, Path)):
        return str(resolve(value, base_dir))
    return "<decoded array>"


def resolve(path: str | Path, base_dir: Path | None) -> Path:
    path = Path(path).expanduser()
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


def _wav_frames(f: Any) -> int | None:
    """The frame count a WAV file's header promises (its data chunk's size); None for other files."""
    head, block = f.read(12), 0
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    while len(chunk := f.read(8)) == 8:
        kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if kind == b"data":  # 0 or 0xFFFFFFFF: a streamed file, size unknown
            return size // block if block and 0 < size < 0xFFFFFFFF else None
        body = f.read(size + size % 2)  # chunks are padded to even sizes
        if kind == b"fmt ":
            block = int.from_bytes(body[12:14], "little")  # bytes per frame, all channels
    return None


def _promised_frames(source: Any) -> int | None:
    if not isinstance(source, str):  # in-memory bytes
        frames = _wav_frames(source)
        source.seek(0)
        return frames
    try:
        with open(source, "rb") as f:
            return _wav_frames(f)
    except OSError:
        return None  # sf.read says what is wrong


def _read(source: Any, name: str) -> tuple[np.ndarray, int]:
    promised = _promised_frames(source)
    try:
        samples, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(name, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None
    except OSError as e:  # missing file, permission
        raise AudioError(name, e.strerror or str(e)) from None
    if promised is not None and len(samples) < promised:
        log.warning("%s: truncated WAV, its header promises %d frames but the file holds %d; using those (re-export "
                    "the file if its transcript covers more)", name, promised, len(samples))
    return samples.mean(axis=1), int(rate)  # (frames, channels) -> mono


def decode(value: Any, base_dir: Path | None = None, default_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sampling rate) of one audio cell."""
    name = describe(value, base_dir)
    if isinstance(value, dict):
        if value.get("array") is not None:
            rate = value.get("sampling_rate") or default_rate
            if not rate:
                raise AudioError(name, "a decoded array needs its 'sampling_rate'")
            return to_mono(np.asarray(value["array"], dtype=np.float32)), int(rate)
        if value.get("bytes"):
            return _read(io.BytesIO(value["bytes"]), name)
        if value.get("path"):
            return _read(str(resolve(value["path"], base_dir)), name)
        raise AudioError(name, "the cell holds neither a path, bytes nor an array")
    if isinstance(value, (bytes, bytearray)):
        return _read(io.BytesIO(bytes(value)), name)
    if isinstance(value, (str, Path)):
        if not str(value).strip():
            raise AudioError("<empty path>", "the audio cell is empty")
        return _read(str(resolve(value, base_dir)), name)
    if isinstance(value, (np.ndarray, list, tuple)) and default_rate:
        return to_mono(np.asarray(value, dtype=np.float32)), int(default_rate)
    raise AudioError(name, f"unsupported audio value of type {type(value).__name__}")


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels; accepts (samples,), (channels, samples) or (samples, channels)."""
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError("<decoded array>", f"expected 1 or 2 dimensions, got shape {samples.shape}")
    channel_axis = 0 if samples.shape[0] < samples.shape[1] else 1
    return samples.mean(axis=channel_axis).astype(np.float32)


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    if rate == target_rate or len(samples) == 0:
        return samples
    return librosa.resample(samples, orig_sr=rate, target_sr=target_rate).astype(np.float32)


def load(value: Any, target_rate: int, base_dir: Path | None = None) -> np.ndarray:
    """Mono float32 samples at `target_rate` from any audio cell (bare arrays are taken as target_rate)."""
    samples, rate = decode(value, base_dir, default_rate=target_rate)
    if not np.isfinite(samples).all():
        raise AudioError(describe(value, base_dir), "the samples contain NaN or infinity")
    return resample(samples, rate, target_rate)


def pad_to(samples: np.ndarray, length: int) -> np.ndarray:
    """Samples followed by silence up to `length` (unchanged when long enough)."""
    return np.pad(samples, (0, length - len(samples))) if len(samples) < length else samples


def duration_ok(num_samples: int, rate: int, min_seconds: float, max_seconds: float | None) -> bool:
    seconds = num_samples / rate
    return seconds >= min_seconds and (not max_seconds or seconds <= max_seconds)  # max 0 / None: no limit
