"""--streaming, per task (DataSpec.stream): raw streamed training rows -> model inputs, on the fly in whichever
process iterates the stream (the dataloader workers); images and audio are decoded there, never up front. Each
takes what the task's usual preparation of the bounded rows settled (labels, vocabulary, processor)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from transformers import AutoConfig

from tunesuite import data
from tunesuite.data import audio, audio_columns, image
from tunesuite.errors import TunesuiteError
from tunesuite.tasks import asr_data, classification, ctc, image_data

WHERE = "streamed train split"


def _map(stream: IterableDataset, rows: Callable, sample: Dataset, arrays: bool = False) -> IterableDataset:
    """stream.map(rows), with the output columns known up front (from one sample row): the Trainer drops the
    columns the model does not take, so it must know them."""
    probe = sample.select(range(1)).map(rows, batched=True, remove_columns=sample.column_names)
    mapped = stream.map(rows, batched=True, batch_size=64, remove_columns=sample.column_names,
                        features=probe.features)
    return mapped.with_format("numpy") if arrays else mapped


def _encoder(prepared: Any, sample: Dataset, label: str) -> Callable[[Any], Any]:
    """The label encoder of the bounded rows; a class they did not hold stops the run naming it."""
    encode = classification.label_encoder(prepared.problem_type, prepared.label_names,
                                          data.is_class_label(sample.features[label]))

    def checked(value: Any) -> Any:
        try:
            return encode(value)
        except KeyError:
            raise TunesuiteError(f"{WHERE}: label {value!r} is not among the {len(prepared.label_names)} classes of "
                                 f"the first {len(sample)} rows; raise --streaming-sample") from None

    return checked


def text(stream: IterableDataset, prepared: Any, cfg: Any, sample: Dataset) -> IterableDataset:
    columns, label, tokenizer = cfg.task_args.text_column, cfg.data.label_column, prepared.processor
    encode = _encoder(prepared, sample, label)

    def rows(batch: dict[str, list]) -> dict[str, list]:
        if any(v is None for c in [*columns, label] for v in batch[c]):
            raise TunesuiteError(f"{WHERE}: an empty text or label cell; fill or drop such rows")
        encoded = dict(tokenizer(*[batch[c] for c in columns], truncation=True,
                                 max_length=tokenizer.model_max_length))  # clamped to the model
        return {**encoded, "labels": [encode(v) for v in batch[label]]}

    return _map(stream, rows, sample)


def images(stream: IterableDataset, prepared: Any, cfg: Any, sample: Dataset) -> IterableDataset:
    args, label, processor = cfg.task_args, cfg.data.label_column, prepared.processor
    column, base = image_data.image_column(sample, args.image_column), data.manifest_dir(cfg.data.dataset)
    encode, size = _encoder(prepared, sample, label), image.target_size(processor)
    resize = {"do_resize": False, "do_center_crop": False} if args.augment else {}

    def rows(batch: dict[str, list]) -> dict[str, Any]:
        pictures, labels = [], []
        for ref, value in zip(batch[column], batch[label], strict=True):
            try:
                pictures.append(image.open_image(ref, base, WHERE))
            except TunesuiteError:
                if not args.skip_bad_files:
                    raise
                continue  # --skip-bad-files: dropped here, as the usual path drops it up front
            labels.append(encode(value))
        if resize and pictures:  # torch's RNG: seeded by the run, distinct per dataloader worker
            rng = random.Random(int(torch.randint(0, 2**31 - 1, ()).item()))
            pictures = [image.augment(p, size, rng) for p in pictures]
        pixels = processor(pictures, return_tensors="np", **resize)["pixel_values"] if pictures else []
        return {"pixel_values": list(pixels), "labels": labels}

    return _map(stream, rows, sample, arrays=True)


def speech(stream: IterableDataset, prepared: Any, cfg: Any, sample: Dataset) -> IterableDataset:
    """Decode, normalise the transcript, drop what the usual path drops (too long or short, unreadable with
    --skip-bad-files, transcripts longer than the output frames), pad the shortest, extract features."""
    args, tokenizer = cfg.task_args, prepared.processor.tokenizer
    features = prepared.processor.feature_extractor
    audio_col = asr_data.find_column(sample, args.audio_column, (), "--audio-column", "audio")
    text_col = asr_data.find_column(sample, args.text_column, asr_data.TEXT_GUESSES, "--text-column", "transcript")
    normalise = ctc.normaliser(args.chars_to_ignore or [], args.lowercase)
    seen = [normalise(t) for t in sample[text_col] if t]
    upper = bool(ctc.missing_symbols(seen, tokenizer)) and not ctc.missing_symbols(seen, tokenizer, upper=True)
    config, base, rate = AutoConfig.from_pretrained(cfg.model.model), data.manifest_dir(cfg.data.dataset), \
        features.sampling_rate
    shortest = ctc.min_samples(config)

    def rows(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_values": [], "labels": []}
        for cell, raw_text in zip(batch[audio_col], batch[text_col], strict=True):
            transcript = normalise(raw_text) if raw_text else ""
            samples = audio_columns.load_cell(cell, rate, base, WHERE, args.skip_bad_files) if transcript else None
            if not transcript and not args.skip_bad_files:
                raise TunesuiteError(f"{WHERE} ({audio.describe(cell, base)}): empty transcript; fill or drop the "
                                     f"row, {audio_columns.SKIP_HINT}")
            if samples is None or not audio.duration_ok(len(samples), rate, args.min_duration, args.max_duration):
                continue
            ids = tokenizer(transcript.upper() if upper else transcript).input_ids
            if ctc.frames_needed(ids) > ctc.output_frames(max(len(samples), shortest), config):
                continue
            out["input_values"].append(np.asarray(features(audio.pad_to(samples, shortest), sampling_rate=rate)
                                                  .input_values[0], np.float32))
            out["labels"].append(ids)
        return out

    return _map(stream, rows, sample, arrays=True)


def sounds(stream: IterableDataset, prepared: Any, cfg: Any, sample: Dataset) -> IterableDataset:
    """Decode, pad the shortest, crop the long (random crops with --augment, else the centre)."""
    args, label, rate = cfg.task_args, cfg.data.label_column, prepared.processor.sampling_rate
    column, base = audio_columns.audio_column(sample, args.audio_column), data.manifest_dir(cfg.data.dataset)
    config, encode = AutoConfig.from_pretrained(cfg.model.model), _encoder(prepared, sample, label)
    shortest = ctc.min_samples(config) if hasattr(config, "conv_stride") else 1
    longest = int(args.max_duration * rate) if args.max_duration else None

    def rows(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_values": [], "labels": []}
        rng = random.Random(int(torch.randint(0, 2**31 - 1, ()).item()))
        for cell, value in zip(batch[column], batch[label], strict=True):
            samples = audio_columns.load_cell(cell, rate, base, WHERE, args.skip_bad_files)
            if samples is None:
                continue
            samples = audio.pad_to(samples, shortest)
            if longest and len(samples) > longest:
                samples = audio_columns.random_crop(samples, longest, rng) if args.augment else \
                    audio_columns.centre_crop(samples, longest)
            out["input_values"].append(samples.astype(np.float32))
            out["labels"].append(encode(value))
        return out

    return _map(stream, rows, sample, arrays=True)
