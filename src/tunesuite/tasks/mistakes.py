"""The worst mistakes of an evaluated split, per task kind (ResultSpec.mistakes): what the report shows.

Each record: the row, its input as the dataset gave it (text, or an image / audio path; for images and audio
the dataset holds as bytes or arrays, `media`: a thumbnail or clip as a data: URI), the reference, the
prediction and how wrong it was (the loss of a classifier, the WER of a transcript); the worst first."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np

from tunesuite.registry import Prepared
from tunesuite.tasks.classification import MULTI, REGRESSION
from tunesuite.tasks.metrics import predicted_and_loss, sigmoid

LIMIT = 20  # records kept per split


def _inputs(prepared: Prepared, split: str, row: int) -> dict[str, Any]:
    raw = prepared.raw.get(split)
    return {c: raw[row][c] for c in prepared.input_columns} if raw is not None else {}


def classification(output: Any, prepared: Prepared, split: str) -> list[dict[str, Any]] | None:
    """Classifiers: the wrong rows, highest loss (most confidently wrong) first; for multi-label, the rows
    whose label set is wrong (mean per-class loss); for regression, the largest errors."""
    logits, labels = np.asarray(output.predictions), np.asarray(output.label_ids)
    if prepared.problem_type == REGRESSION:
        predicted, target = logits.reshape(-1), labels.reshape(-1).astype(float)
        error = np.abs(predicted - target)
        return [{"row": i, "input": _inputs(prepared, split, i), "reference": round(float(target[i]), 4),
                 "prediction": round(float(predicted[i]), 4), "abs_error": round(float(error[i]), 4)}
                for i in sorted(range(len(error)), key=lambda i: -error[i])[:LIMIT]]
    names = prepared.label_names or []
    if prepared.problem_type == MULTI:
        probs, hot = sigmoid(logits), labels.astype(int)
        loss = -(hot * np.log(np.clip(probs, 1e-12, None)) + (1 - hot) * np.log(np.clip(1 - probs, 1e-12, None)))
        wrong = [int(i) for i in np.flatnonzero(((probs > 0.5) != hot.astype(bool)).any(1))]
        wrong.sort(key=lambda i: -loss[i].mean())
        return [{"row": i, "input": _inputs(prepared, split, i),
                 "reference": [n for n, h in zip(names, hot[i], strict=True) if h],
                 "prediction": [n for n, p in zip(names, probs[i], strict=True) if p > 0.5],
                 "loss": round(float(loss[i].mean()), 4)} for i in wrong[:LIMIT]]
    labels = labels.reshape(-1)
    predicted, confidence, loss = predicted_and_loss(output.predictions, labels)  # never all of softmax at once
    wrong = [int(i) for i in np.flatnonzero(predicted != labels)]
    wrong.sort(key=lambda i: -loss[i])
    return [{"row": i, "input": _inputs(prepared, split, i), "reference": names[labels[i]],
             "prediction": names[predicted[i]], "confidence": round(float(confidence[i]), 4),
             "loss": round(float(loss[i]), 4)} for i in wrong[:LIMIT]]


def transcripts(decode: Any):
    """Speech recognition: the utterances with word errors, highest WER first. `decode`: the task's decode."""

    def worst(output: Any, prepared: Prepared, split: str) -> list[dict[str, Any]] | None:
        import jiwer

        raw = prepared.raw.get(split)
        if raw is None or not prepared.reference_column:
            return None
        hypotheses = [row["text"] for row in decode(output.predictions, prepared.processor, None)]
        rows = []
        for i, hypothesis in enumerate(hypotheses):
            reference = raw[i][prepared.reference_column]
            if reference.strip() and hypothesis != reference:
                rows.append({"row": i, "input": _inputs(prepared, split, i), "reference": reference,
                             "prediction": hypothesis, "wer": round(float(jiwer.wer(reference, hypothesis)), 4),
                             "cer": round(float(jiwer.cer(reference, hypothesis)), 4)})
        rows.sort(key=lambda r: (-r["wer"], -r["cer"]))
        return rows[:LIMIT]

    return worst


def with_media(hook: Any, column: str, embed: Any):
    """`hook`, plus: an input whose `column` names no file (bytes or arrays in the dataset) travels inside its
    record, as `media`: a data: URI from `embed(model-ready split, row, prepared)` (the report shows it)."""

    def wrapped(output: Any, prepared: Prepared, split: str) -> list[dict[str, Any]] | None:
        records = hook(output, prepared, split)
        dataset = {"eval": prepared.eval, "test": prepared.test}.get(split)
        for record in records or []:
            value = record["input"].get(column)
            if dataset is not None and value is not None and not Path(str(value)).is_file():
                record["media"] = embed(dataset, record["row"], prepared)
        return records

    return wrapped


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_thumbnail(column: str):
    """embed for images: a 128-pixel PNG of the image stored (undecoded) in `column` of the model-ready split."""

    def embed(dataset: Any, row: int, prepared: Prepared) -> str:
        from tunesuite.data.image import open_image

        im = open_image(dataset.with_format(None)[row][column])
        im.thumbnail((128, 128))
        buffer = io.BytesIO()
        im.save(buffer, "PNG")
        return _uri(buffer.getvalue(), "image/png")

    return embed


def audio_clip(column: str):
    """embed for audio: the samples in `column` of the model-ready split as a 16-bit WAV, peak-normalised."""

    def embed(dataset: Any, row: int, prepared: Prepared) -> str:
        import soundfile

        samples = np.asarray(dataset.with_format("numpy", columns=[column])[row][column], dtype=np.float32)
        peak = float(np.abs(samples).max()) if samples.size else 0.0
        rate = getattr(prepared.processor, "feature_extractor", prepared.processor).sampling_rate
        buffer = io.BytesIO()
        soundfile.write(buffer, samples / peak if peak > 1 else samples, rate, format="WAV", subtype="PCM_16")
        return _uri(buffer.getvalue(), "audio/wav")

    return embed
