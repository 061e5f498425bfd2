"""Audio classification (wav2vec2, HuBERT, WavLM, data2vec-audio, Whisper's encoder): keywords, speakers, sounds.

Data as for speech recognition (Hub datasets with an audio column, path,label manifests, folders of class
sub-folders, save_to_disk), decoded once with soundfile/librosa; labels, metrics and reports as for the other
classifiers (tasks/classification.py). A CTC run of this suite makes a good starting encoder: its head is replaced.
A Whisper checkpoint loads as WhisperForAudioClassification (its encoder, a projector and a classifier; the decoder
is dropped): every clip is padded to the encoder's window (30 s) and longer ones cropped to it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification, Wav2Vec2FeatureExtractor

from tunesuite import data
from tunesuite.data import audio
from tunesuite.data.audio_columns import audio_column, centre_crop, random_crop, undecoded
from tunesuite.errors import TunesuiteError
from tunesuite.modes import own_prompts, whisper_prompts  # noqa: F401 (whisper_prompts registers its kind)
from tunesuite.registry import DataSpec, ModelSpec, Prepared, ResultSpec, Task, register_task
from tunesuite.tasks import audio_data, classification, ctc, mistakes, streamed_inputs
from tunesuite.tasks.classification import MULTI

log = logging.getLogger("tunesuite")
MAX_DURATION = "tunesuite_max_duration"  # model config key: prediction crops like evaluation did


@dataclass
class AudioArgs:
    audio_column: str | None = field(default=None, metadata={
        "help": "Audio column: file paths (relative to the manifest's folder), bytes or decoded arrays "
                "(default: the Audio column, or audio, path, file_name, file...)."})
    max_duration: float | None = field(default=10.0, metadata={
        "help": "Crop clips longer than this (seconds; 0: never): a random crop in training, the centre in "
                "evaluation and prediction."})
    augment: bool = field(default=True, metadata={
        "help": "Random crops of long training clips (--no-augment: centre crops, and the feature cache may run)."})
    freeze_feature_encoder: bool = field(default=True, metadata={
        "help": "Keep the convolutional feature encoder frozen (--no-freeze-feature-encoder trains it too)."})
    skip_bad_files: bool = field(default=False, metadata={
        "help": "Skip (and count) unreadable audio instead of stopping."})


def load_processor(path: str, cfg: Any) -> Any:
    """The model's feature extractor (a CTC run's too); without one, 16 kHz normalised input."""
    try:
        return AutoFeatureExtractor.from_pretrained(path, **({"revision": cfg.model.revision} if cfg else {}))
    except (OSError, ValueError):
        log.warning("%s has no feature extractor config: using 16 kHz, normalised input with attention masks", path)
        return Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True)


def window(config: Any) -> int | None:
    """Log-mel frames of a fixed-window encoder (Whisper: 3000 = 30 s, every clip padded to it); None otherwise."""
    positions = getattr(config, "max_source_positions", None)
    return 2 * positions if positions and hasattr(config, "num_mel_bins") else None


def padding(processor: Any) -> str | bool:
    """Whisper's feature extractor pads every clip to its window (the encoder takes no other length); others pad
    a batch to its longest clip."""
    return "max_length" if getattr(processor, "n_samples", None) else True


def shortest_input(config: Any) -> int:
    """The fewest samples the model's convolutional front end takes (1 for models without one)."""
    return ctc.min_samples(config) if hasattr(config, "conv_stride") else 1


def preprocess(raw: Any, processor: Any, cfg: Any) -> Prepared:
    args, label = cfg.task_args, cfg.data.label_column
    splits = data.select_splits(raw, cfg.data, cfg.training.seed)
    column = audio_column(splits["train"], args.audio_column)
    for key, split in splits.items():
        data.require_columns(split, [column], key, "--audio-column")
        data.require_columns(split, [label], key, "--label-column")
    splits = {k: undecoded(s.select_columns(list(dict.fromkeys([column, label]))), column) for k, s in splits.items()}
    problem, names, is_class_label = audio_data.label_setup(splits, label, cfg)
    if data.manifest_dir(cfg.data.dataset) is not None:
        audio_data.check_class_folders(cfg.data.dataset, cfg.data.train_split, names)
    try:
        config = AutoConfig.from_pretrained(cfg.model.model, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir)
    except (OSError, ValueError) as e:
        raise TunesuiteError(f"could not load model {cfg.model.model!r}: {str(e).strip().splitlines()[0]}") from None
    rate = processor.sampling_rate
    max_samples = int(args.max_duration * rate) if args.max_duration else None
    longest_input = getattr(processor, "n_samples", None)  # Whisper: its window (30 s); longer clips are cropped
    if longest_input and (max_samples is None or max_samples > longest_input):
        max_samples = longest_input
    ctx = {"args": args, "rate": rate, "audio_column": column, "label_column": label, "max_samples": max_samples,
           "base": data.manifest_dir(cfg.data.dataset), "shortest": shortest_input(config),
           "workers": cfg.data.preprocessing_num_workers,
           "encode": classification.label_encoder(problem, names, is_class_label),
           "sources": {key: data.split_source(cfg.data, key) for key in splits}}
    decoded = {key: audio_data.decode_split(split, key, ctx) for key, split in splits.items()}
    audio_data.check_classes(decoded["train"], names, problem == MULTI, ctx["sources"]["train"])
    longest = max(len(v) for v in decoded["train"].with_format("numpy", columns=["input_values"])["input_values"])
    augmented = bool(args.augment and max_samples and longest > max_samples)
    ready = {k: v.select_columns(["input_values", "labels"]).with_format("numpy") for k, v in decoded.items()}
    if augmented:  # a fresh crop of each long clip every epoch
        ready["train"].set_transform(_random_crops(max_samples))
    elif max_samples and longest > max_samples:
        ready["train"] = decoded["train"].map(lambda row: {"input_values": centre_crop(row["input_values"],
                                              max_samples)}, desc="centre crops").select_columns(
                                              ["input_values", "labels"]).with_format("numpy")
    reports = {k: v.select_columns(["path"]).add_column(label, _names_of(v["labels"], names, problem))
               for k, v in decoded.items() if k != "train"}
    weights = classification.resolve_class_weights(cfg.data.class_weights, problem, names,
                                                    data.values(decoded["train"], "labels"))
    model_kwargs = {**data.label_maps(names), "problem_type": problem}
    return Prepared(processor, ready["train"], ready.get("eval"), ready.get("test"), model_kwargs, raw=reports,
                    input_columns=["path"], reference_column=label, label_names=names, problem_type=problem,
                    augmented=augmented, class_weights=weights)


def _names_of(targets: list[Any], names: list[str], problem: str) -> list[Any]:
    if problem == MULTI:
        return [[n for n, hot in zip(names, row, strict=True) if hot] for row in targets]
    return [names[t] for t in targets]


def _random_crops(length: int):
    def crop(batch: dict[str, list]) -> dict[str, list]:
        rng = random.Random(int(torch.randint(0, 2**31 - 1, ()).item()))  # torch's RNG: seeded by the run
        return {"input_values": [random_crop(np.asarray(v, np.float32), length, rng) for v in batch["input_values"]],
                "labels": batch["labels"]}

    return crop


def collator(processor: Any):
    """Features of a batch of raw clips (normalised per clip, padded, with an attention mask when used)."""

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        clips = [np.asarray(f["input_values"], np.float32) for f in features]
        batch = dict(processor(clips, sampling_rate=processor.sampling_rate, padding=padding(processor),
                               return_tensors="pt"))
        labels = torch.as_tensor(np.asarray([f["labels"] for f in features]))
        batch["labels"] = labels.float() if labels.is_floating_point() or labels.ndim > 1 else labels.long()
        return batch

    return collate


def make_batch(processor: Any, items: list, config: Any) -> dict[str, torch.Tensor]:
    """Audio paths, bytes, {array, sampling_rate} dicts or arrays (at the model's rate) -> features; short clips
    padded and long ones centre-cropped as in evaluation."""
    rate, seconds = processor.sampling_rate, getattr(config, MAX_DURATION, None)
    clips = [audio.pad_to(audio.load(item, rate), shortest_input(config)) for item in items]
    if seconds and any(len(c) > seconds * rate for c in clips):
        log.info("cropped %d clip(s) longer than %.1f s to their centre (the run's --max-duration)",
                 sum(len(c) > seconds * rate for c in clips), seconds)
        clips = [centre_crop(c, int(seconds * rate)) for c in clips]
    return dict(processor(clips, sampling_rate=rate, padding=padding(processor), return_tensors="pt"))


def after_mode(model: torch.nn.Module, args: Any) -> torch.nn.Module:
    """The convolutional front end stays frozen unless the flag says otherwise; the crop length goes into the
    config, so prediction crops like evaluation."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if args.freeze_feature_encoder and hasattr(base, "freeze_feature_encoder"):
        base.freeze_feature_encoder()
    setattr(base.config, MAX_DURATION, args.max_duration or None)
    return model


def prompt_module(model: torch.nn.Module, args: Any, model_path: str) -> torch.nn.Module:
    """Learnable frames ahead of the audio, after the feature projection (modes/own_prompts.py, speech);
    Whisper's encoder: tokens at its input (modes/whisper_prompts.py)."""
    return own_prompts.attach(model, {"num_virtual_tokens": args.num_virtual_tokens, "depth": args.prompt_depth},
                              "speech")


def feature_split(model: Any):
    """The frozen encoder's states, mean-pooled over the audio's frames; projector + classifier train on them.
    The same logits as the model's own forward: mean pooling commutes with the (affine) projector. Whisper's
    encoder (`model.encoder`) pools every frame of its window, padding included, as its own forward does."""
    if getattr(model.config, "use_weighted_layer_sum", False) or not hasattr(model, "projector"):
        return None
    whisper = window(model.config) is not None

    def extract(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if whisper:
            return model.encoder(batch[model.main_input_name]).last_hidden_state.mean(1)
        hidden = model.base_model(batch["input_values"], attention_mask=batch.get("attention_mask")).last_hidden_state
        if batch.get("attention_mask") is None:
            return hidden.mean(1)
        mask = model._get_feature_vector_attention_mask(hidden.shape[1], batch["attention_mask"])
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    return extract, lambda pooled: model.classifier(model.projector(pooled))


AUDIO_CLASSIFICATION = register_task(Task(
    name="audio-classification",
    model=ModelSpec(
        auto_model=AutoModelForAudioClassification,
        head_modules=("projector", "classifier"),
        prompt_module=prompt_module,
        cached_features=True,  # when crops are central (--no-augment or clips within --max-duration)
        feature_split=feature_split,
        after_mode=after_mode,
    ),
    data=DataSpec(load_processor=load_processor, preprocess=preprocess, collator=collator, make_batch=make_batch,
                  args=AudioArgs, example=("import numpy", 'numpy.zeros(16000, dtype="float32")'),
                  stream=streamed_inputs.sounds),
    results=ResultSpec(main_metric="accuracy", greater_is_better=True, compute_metrics=classification.compute_metrics,
                       decode=classification.decode, write_reports=classification.write_reports,
                       mistakes=mistakes.with_media(mistakes.classification, "path",
                                                    mistakes.audio_clip("input_values")),
                       metric_inputs=classification.metric_inputs),
    # remove_unused_columns off: the splits hold only input_values and labels, and Whisper's forward names its
    # input input_features (the collator's output), so the Trainer would drop the samples
    training_defaults={"per_device_train_batch_size": 16, "per_device_eval_batch_size": 32, "warmup_steps": 0.1,
                       "remove_unused_columns": False},
))
