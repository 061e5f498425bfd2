"""A Whisper run exported to ONNX (`tunesuite export OUT DEST --format onnx`), transcribing through onnxruntime.

Two graphs: the encoder (log-mel features -> encoder states) and the decoder (the ids so far + the encoder states
-> the next token's logits; no key/value cache: each step reads the whole prefix again, which costs little for the
short transcripts a 30 s window holds). The greedy loop is ours, written to repeat what transformers' Whisper
`generate` does in a run's evaluation and its predictor: the same start tokens (language and task for a
multilingual run, detected from the first step when the run set none, then no-timestamps), the suppressed tokens
(always, and at the first step), the same stop (end of text or the same length), and the same output (the ids
after the start tokens, end of text dropped, padded with the pad id). Those settings are read once at export from
the model's generation config into `generation.json`, so DEST needs neither torch's model nor its config to
transcribe. Torch is used for the feature tensors only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tunesuite.errors import TunesuiteError
from tunesuite.models.onnx_predictor import session
from tunesuite.models.run_folder import RunFolder
from tunesuite.modes.whisper_start import DETECT, start_tokens
from tunesuite.registry import Task

ENCODER, DECODER = "encoder.onnx", "decoder.onnx"
FILES = {"fp32": (ENCODER, DECODER), "int8": ("encoder_int8.onnx", "decoder_int8.onnx")}
GENERATION = "generation.json"

Encode = Callable[[np.ndarray], np.ndarray]  # features -> encoder states
Step = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ids so far, encoder states) -> next token's logits


def is_export(folder: str | Path) -> bool:
    """A folder written by the sequence-to-sequence ONNX export (its fp32 encoder is always kept)."""
    return (Path(folder).expanduser() / ENCODER).is_file()


def settings(model: Any) -> dict[str, Any]:
    """What greedy generation needs, read from `model`'s generation config as Whisper's `generate` reads it:
    the start tokens (or the tokens to detect a language among), suppressed ids, end of text, pad, total length."""
    generation, limit = model.generation_config, int(model.config.max_target_positions)
    start = start_tokens(generation, getattr(generation, "language", None) or None)
    # no language set: detected per clip from the first step, as generate does (DETECT is filled in then)
    languages = sorted(int(i) for i in generation.lang_to_id.values()) if DETECT in start else []
    if generation.max_new_tokens is not None:
        length = min(len(start) + int(generation.max_new_tokens), limit)
    else:  # Whisper's generate adds the start tokens to max_length, within the decoder's positions
        length = min(int(generation.max_length) + min(limit // 2 - 1, len(start)), limit)
    return {"start": start, "languages": languages, "eos": int(generation.eos_token_id),
            "pad": int(generation.pad_token_id), "max_length": length,
            "suppress": [int(i) for i in generation.suppress_tokens or []],
            "begin_suppress": [int(i) for i in generation.begin_suppress_tokens or []]}


def greedy(encode: Encode, step: Step, features: np.ndarray, setup: dict[str, Any]) -> np.ndarray:
    """The ids greedy decoding writes for a batch of features (rows padded with `pad`), start tokens left out."""
    states = encode(features)
    rows = len(features)
    start = np.tile(np.asarray(setup["start"], dtype=np.int64), (rows, 1))
    if setup["languages"]:  # the language each clip is spoken in: the likeliest language token after the start
        first = step(start[:, :1], states)
        candidates = np.asarray(setup["languages"])
        start[:, 1] = candidates[first[:, candidates].argmax(-1)]
    ids, begin = start, start.shape[1]
    done = np.zeros(rows, dtype=bool)
    while ids.shape[1] < setup["max_length"] and not done.all():
        logits = step(ids, states).astype(np.float32)
        logits[:, setup["suppress"]] = -np.inf
        if ids.shape[1] == begin:
            logits[:, setup["begin_suppress"]] = -np.inf
        chosen = np.where(done, setup["pad"], logits.argmax(-1))
        done |= chosen == setup["eos"]
        ids = np.concatenate([ids, chosen[:, None]], axis=1)
    written = ids[:, begin:]
    written = np.where(written == setup["eos"], setup["pad"], written)  # generate returns no end-of-text token
    width = max([int(np.flatnonzero(row != setup["pad"]).max()) + 1 for row in written if (row != setup["pad"]).any()],
                default=0)
    return written[:, :width]


class OnnxSeq2SeqPredictor:
    """An exported Whisper run with its processor; `predict(items)` returns one {"text": ...} per item, as the
    run's own Predictor does."""

    def __init__(self, task: Task, encoder: Any, decoder: Any, processor: Any, config: Any,
                 setup: dict[str, Any]):
        self.task, self.encoder, self.decoder = task, encoder, decoder
        self.processor, self.config, self.setup = processor, config, setup

    def _encode(self, features: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"input_features": features.astype(np.float32)})[0]

    def _step(self, ids: np.ndarray, states: np.ndarray) -> np.ndarray:
        return self.decoder.run(None, {"decoder_input_ids": ids.astype(np.int64), "encoder_hidden_states": states})[0]

    def generate(self, batch: dict[str, Any]) -> Any:
        """Generated ids (a torch tensor, as the run's `generate` returns them) for a batch of model inputs."""
        import torch

        features = batch["input_features"]
        features = np.asarray(features.numpy() if hasattr(features, "numpy") else features)
        return torch.from_numpy(greedy(self._encode, self._step, features, self.setup))

    def predict(self, items: list, batch_size: int = 32) -> list[dict[str, Any]]:
        from tunesuite.data import audio
        from tunesuite.tasks.asr_seq2seq import window_samples

        features = self.processor.feature_extractor
        rate, window = features.sampling_rate, window_samples(features)
        clips = [audio.load(item, rate) for item in items]
        for item, clip in zip(items, clips, strict=True):
            if len(clip) > window:
                name = item if isinstance(item, str | Path) else "a clip"
                raise TunesuiteError(f"{name} is {len(clip) / rate:.1f} s, longer than the model's {window / rate:g} s "
                                     "window: the ONNX export transcribes one window per clip; cut it into shorter "
                                     "clips, or transcribe it whole with tunesuite.load(OUT) (the run itself)")
        rows: list[dict[str, Any]] = []
        for at in range(0, len(clips), batch_size):
            batch = self.task.data.make_batch(self.processor, clips[at : at + batch_size], self.config)
            rows += self.task.results.decode(self.generate(batch), self.processor, self.config)
        return rows


def load(folder: str | Path, precision: str | None = None) -> OnnxSeq2SeqPredictor:
    """The exported encoder and decoder in `folder`: int8 when the export kept them (they passed the gate), else
    fp32; `precision` ("fp32" or "int8") picks."""
    from transformers import AutoConfig

    dest = Path(folder).expanduser()
    if precision is not None and precision not in FILES:
        raise TunesuiteError(f"precision {precision!r} is not one of {', '.join(FILES)}")
    chosen = precision or ("int8" if all((dest / f).is_file() for f in FILES["int8"]) else "fp32")
    missing = [f for f in FILES[chosen] if not (dest / f).is_file()]
    if missing:
        raise TunesuiteError(f"{dest} holds no {', '.join(missing)}: export with --quantize int8 for it, or ask "
                             "for fp32")
    task = RunFolder(dest).task
    processor = task.data.load_processor(str(dest), None)
    encoder, decoder = (session(dest / f) for f in FILES[chosen])
    setup = json.loads((dest / GENERATION).read_text())
    return OnnxSeq2SeqPredictor(task, encoder, decoder, processor, AutoConfig.from_pretrained(dest), setup)
