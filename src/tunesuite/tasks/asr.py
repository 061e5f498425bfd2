"""Speech recognition with CTC models (wav2vec2 family): greedy decoding, WER and CER."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForCTC,
    AutoTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
)

from ..errors import TunesuiteError
from ..registry import DataSpec, ModelSpec, Prepared, ResultSpec, Task, register_task
from . import asr_data, ctc, mistakes, streams
from .asr_model import (
    after_mode,
    collator,
    compute_metrics,
    decode,
    format_prediction,
    make_batch,
    metric_inputs,
    on_load,
    preprocess_logits,
    prompt_module,
)

log = logging.getLogger("tunesuite")


@dataclass
class AsrArgs:
    audio_column: str | None = field(default=None, metadata={
        "help": "Audio column: file paths (relative to the manifest's folder), bytes or decoded arrays "
                "(default: the Audio column, or audio, path, file_name, file...)."})
    text_column: str | None = field(default=None, metadata={
        "help": "Transcript column (default: text, sentence, transcription or transcript)."})
    chars_to_ignore: list[str] = field(default_factory=lambda: list(ctc.DEFAULT_CHARS_TO_IGNORE), metadata={
        "help": "Characters removed from transcripts before building the vocabulary and scoring "
                "(--chars-to-ignore \"\" keeps every character)."})
    lowercase: bool = field(default=True, metadata={"help": "Lower-case transcripts (--no-lowercase keeps case)."})
    min_duration: float = field(default=0.0, metadata={"help": "Drop utterances shorter than this (seconds)."})
    max_duration: float | None = field(default=20.0, metadata={
        "help": "Drop utterances longer than this (seconds; 0: no limit); long ones dominate memory."})
    freeze_feature_encoder: bool = field(default=True, metadata={
        "help": "Keep the convolutional feature encoder frozen (--no-freeze-feature-encoder trains it too)."})
    skip_bad_files: bool = field(default=False, metadata={
        "help": "Skip (and count) unreadable audio and empty transcripts instead of stopping."})
    mask_time_prob: float | None = field(default=None, metadata={
        "help": "SpecAugment: fraction of frames masked while training (default: the model's config)."})


def load_processor(path: str, cfg: Any) -> Any:
    """The model's processor; without a tokenizer, its feature extractor (preprocess builds the vocabulary)."""
    kwargs = {"revision": cfg.model.revision} if cfg else {}
    model_config = _model_config(path, cfg)
    try:
        feature_extractor = AutoFeatureExtractor.from_pretrained(path, **kwargs)
    except (OSError, ValueError):
        masks = getattr(model_config, "feat_extract_norm", "layer") == "layer"
        log.warning("%s has no feature extractor config: using 16 kHz, normalised input%s", path,
                    ", with attention masks" if masks else "")
        feature_extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True,
                                                     return_attention_mask=masks)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError, TypeError):  # a pretrained-only checkpoint has no vocabulary
        return feature_extractor
    if not hasattr(tokenizer, "word_delimiter_token"):  # not a CTC character tokenizer: build one from the data
        return feature_extractor
    return Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def _model_config(path: str, cfg: Any) -> Any:
    kwargs = {"revision": cfg.model.revision, "cache_dir": cfg.model.cache_dir} if cfg else {}
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise TunesuiteError(f"could not load model {path!r}: {str(e).strip().splitlines()[0]}") from None
    if not hasattr(config, "conv_stride"):
        raise TunesuiteError(f"--model {path}: a {config.model_type} model has no CTC front end; the asr task "
                             "fine-tunes wav2vec2-family models (wav2vec2, HuBERT, WavLM, data2vec-audio)")
    return config


def preprocess(raw: Any, processor: Any, cfg: Any) -> Prepared:
    prepared = asr_data.prepare(raw, processor, cfg, _model_config(cfg.model.model, cfg))
    tokenizer, splits = prepared["tokenizer"], prepared["splits"]
    processor = Wav2Vec2Processor(feature_extractor=prepared["feature_extractor"], tokenizer=tokenizer)
    model_kwargs = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                    "ctc_loss_reduction": "mean", "ctc_zero_infinity": True}
    if cfg.task_args.mask_time_prob is not None:
        model_kwargs["mask_time_prob"] = cfg.task_args.mask_time_prob
    reports = {k: v.select_columns(["path", "reference"]) for k, v in splits.items() if k != "train"}
    # audio as numpy arrays: python lists of floats would make every batch slow to collate
    splits = {k: v.with_format("numpy", columns=["input_values", "labels", "length"], output_all_columns=True)
              for k, v in splits.items()}
    return Prepared(processor, splits["train"], splits.get("eval"), splits.get("test"), model_kwargs, raw=reports,
                    input_columns=["path"], reference_column="reference")


ASR = register_task(Task(
    name="automatic-speech-recognition",
    aliases=("asr",),  # the short name: finetune(task="asr"), `task: asr` in YAML presets
    model=ModelSpec(
        auto_model=AutoModelForCTC,
        head_modules=("lm_head",),
        prompt_module=prompt_module,
        after_mode=after_mode,
        on_load=on_load,
    ),
    data=DataSpec(load_processor=load_processor, preprocess=preprocess, collator=collator, make_batch=make_batch,
                  args=AsrArgs, example=("import numpy", 'numpy.zeros(16000, dtype="float32")'),
                  stream=streams.speech),
    results=ResultSpec(main_metric="wer", greater_is_better=False, compute_metrics=compute_metrics, decode=decode,
                       preprocess_logits=preprocess_logits, format_prediction=format_prediction,
                       mistakes=mistakes.with_media(mistakes.transcripts(decode), "path",
                                                    mistakes.audio_clip("input_values")),
                       metric_inputs=metric_inputs),
    training_defaults={"per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "warmup_steps": 0.1,
                       "train_sampling_strategy": "group_by_length", "length_column_name": "length"},
))
