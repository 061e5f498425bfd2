"""Speech recognition with CTC models (wav2vec2 family): greedy decoding, WER and CER.

Below: batches, greedy CTC decoding, WER/CER and the hooks the model gets, then the registered Task. A sequence-to-
sequence checkpoint (Whisper) is handed to tasks/asr_seq2seq.py by the first line of each hook.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
)

from tunesuite.data import audio
from tunesuite.errors import TunesuiteError
from tunesuite.modes import own_prompts, whisper_prompts  # noqa: F401 (whisper_prompts registers its kind)
from tunesuite.registry import DataSpec, ModelSpec, Prepared, ResultSpec, Task, register_task
from tunesuite.tasks import asr_data, asr_seq2seq, ctc, metrics, mistakes, speech_language, streamed_inputs

log = logging.getLogger("tunesuite")


def collator(processor: Any):
    """Pads audio (with an attention mask when the feature extractor uses one) and labels (with -100)."""
    if asr_seq2seq.is_seq2seq_processor(processor):
        return asr_seq2seq.collator(processor)
    feature_extractor = getattr(processor, "feature_extractor", processor)

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = feature_extractor.pad([{"input_values": f["input_values"]} for f in features], padding=True,
                                      return_tensors="pt")
        labels = [list(f["labels"]) for f in features]
        width = max(len(ids) for ids in labels)
        batch["labels"] = torch.tensor([ids + [-100] * (width - len(ids)) for ids in labels], dtype=torch.long)
        return dict(batch)

    return collate


def preprocess_logits(logits: Any, labels: Any) -> torch.Tensor:
    """Frame ids instead of (time x vocabulary) logits: evaluation keeps a small array per utterance. Generated
    ids (a sequence-to-sequence model) pass as they are."""
    if isinstance(logits, torch.Tensor) and not logits.is_floating_point():
        return logits
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(-1)


def decode(predictions: Any, processor: Any, config: Any) -> list[dict[str, str]]:
    """Greedy CTC: best symbol per frame, repeats merged, blanks dropped (as transformers' pipeline does)."""
    if asr_seq2seq.is_seq2seq_processor(processor):
        return asr_seq2seq.decode(predictions, processor, config)
    tokenizer = processor.tokenizer
    ids = ctc.greedy_ids(predictions, tokenizer.pad_token_id)
    return [{"text": text} for text in tokenizer.batch_decode(ids)]


def metric_inputs(prepared: Prepared):
    """(hypotheses, references) as strings: what WER/CER and `--metric` metrics score."""
    if asr_seq2seq.is_seq2seq_processor(prepared.processor):
        return asr_seq2seq.metric_inputs(prepared)
    tokenizer = prepared.processor.tokenizer

    def inputs(eval_pred: Any) -> tuple[list[str], list[str]]:
        hypotheses = [row["text"] for row in decode(eval_pred.predictions, prepared.processor, None)]
        labels = np.where(eval_pred.label_ids < 0, tokenizer.pad_token_id, eval_pred.label_ids)
        return hypotheses, tokenizer.batch_decode(labels, group_tokens=False)

    return inputs


def compute_metrics(prepared: Prepared):
    return metrics.error_rates_of(metric_inputs(prepared))


def format_prediction(record: dict[str, Any]) -> dict[str, Any]:
    """predictions.jsonl: path, reference, hypothesis and the utterance's own WER and CER."""
    scores = metrics.word_char_error_rates([record["reference"]], [record["text"]])
    return {"path": record.get("path"), "reference": record["reference"], "hypothesis": record["text"], **scores}


def make_batch(processor: Any, items: list, config: Any) -> dict[str, torch.Tensor]:
    """Audio paths, bytes, {array, sampling_rate} dicts or arrays (at the model's rate) -> padded inputs."""
    if asr_seq2seq.is_seq2seq_processor(processor):
        return asr_seq2seq.make_batch(processor, items, config)
    feature_extractor = processor.feature_extractor
    rate, shortest = feature_extractor.sampling_rate, ctc.min_samples(config)
    samples = [audio.load(item, rate) for item in items]
    short = sum(len(s) < shortest for s in samples)
    if short:  # as in training: the conv feature encoder needs `shortest` samples
        log.info("padded %d clip(s) shorter than %d samples (%.1f ms) with silence", short, shortest,
                 1000 * shortest / rate)
    samples = [audio.pad_to(s, shortest) for s in samples]
    return dict(feature_extractor(samples, sampling_rate=rate, padding=True, return_tensors="pt"))


def _blank_padded_frames(model: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """In evaluation, frames computed from padding say 'blank': a short utterance in a padded batch decodes
    exactly as it does alone."""
    mask = kwargs.get("attention_mask")
    if model.training or mask is None or getattr(output, "logits", None) is None:
        return output
    logits = output.logits
    valid = model._get_feat_extract_output_lengths(mask.sum(-1)).to(logits.device)
    padded = torch.arange(logits.shape[1], device=logits.device)[None, :] >= valid[:, None]
    blank = torch.full_like(logits[0, 0], torch.finfo(logits.dtype).min)
    blank[model.config.pad_token_id] = 0
    output.logits = torch.where(padded[..., None], blank, logits)
    return output


def after_mode(model: torch.nn.Module, args: Any) -> torch.nn.Module:
    """After the mode: the convolutional front end stays frozen (unless the flag says otherwise), then on_load."""
    if asr_seq2seq.generates(model):
        speech_language.apply(model, args.language, args.speech_task)
        return asr_seq2seq.on_load(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if args.freeze_feature_encoder and hasattr(base, "freeze_feature_encoder"):
        training = any(p.requires_grad for p in base.base_model.feature_extractor.parameters())
        base.freeze_feature_encoder()
        if training:
            log.info("convolutional feature encoder frozen (--no-freeze-feature-encoder trains it too)")
    return on_load(model)


def on_load(model: torch.nn.Module) -> torch.nn.Module:
    """Every CTC model, training or loaded: padding frames score as blanks; adapters save no embeddings."""
    if asr_seq2seq.generates(model):
        return asr_seq2seq.on_load(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(model, "peft_config"):
        # when vocab_size changed, peft saves the "resized" embeddings and asks the model for them; a CTC model
        # has none (transformers raises) and its new head is saved through modules_to_save already
        base.get_input_embeddings = base.get_output_embeddings = lambda: None
    if not getattr(base, "_tunesuite_blanks_padding", False):
        base.register_forward_hook(_blank_padded_frames, with_kwargs=True)
        base._tunesuite_blanks_padding = True
    return model


def _audio_clip(dataset: Any, row: int, prepared: Prepared) -> str:
    """A row's samples as a WAV for the report (sequence-to-sequence rows keep them in input_features)."""
    column = "input_features" if asr_seq2seq.is_seq2seq_processor(prepared.processor) else "input_values"
    return mistakes.audio_clip(column)(dataset, row, prepared)


def prompt_module(model: torch.nn.Module, args: Any, model_path: str) -> torch.nn.Module:
    """Learnable frames ahead of the audio, after the feature projection (modes/own_prompts.py, wav2vec2 section);
    Whisper's: frames after its encoder's output (modes/whisper_prompts.py)."""
    return own_prompts.attach(model, {"num_virtual_tokens": args.num_virtual_tokens, "depth": args.prompt_depth},
                              "speech")


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
    language: str | None = field(default=None, metadata={
        "help": "Multilingual Whisper: the language spoken (a code or a name: fr, french), in the targets and in "
                "generation; an English-only checkpoint refuses it."})
    speech_task: str | None = field(default=None, metadata={
        "help": "Multilingual Whisper: transcribe (the default with --language) or translate (to English).",
        "choices": ["transcribe", "translate"]})


def load_processor(path: str, cfg: Any) -> Any:
    """The model's processor; without a tokenizer, its feature extractor (preprocess builds the vocabulary)."""
    kwargs = {"revision": cfg.model.revision} if cfg else {}
    model_config = _model_config(path, cfg)
    if asr_seq2seq.is_seq2seq_config(model_config):
        return asr_seq2seq.load_processor(path, cfg)
    asked = {"--language": cfg.task_args.language, "--speech-task": cfg.task_args.speech_task} if cfg else {}
    for flag, value in asked.items():
        if value:
            raise TunesuiteError(f"{flag} {value}: --model {path} is a CTC model; only sequence-to-sequence "
                                 "checkpoints (multilingual Whisper) take a language or task; leave it out")
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
    if not hasattr(config, "conv_stride") and not asr_seq2seq.is_seq2seq_config(config):
        raise TunesuiteError(f"--model {path}: a {config.model_type} model has no CTC front end; the asr task "
                             "fine-tunes wav2vec2-family CTC models (wav2vec2, HuBERT, WavLM, data2vec-audio) and "
                             "sequence-to-sequence ones (Whisper)")
    return config


def preprocess(raw: Any, processor: Any, cfg: Any) -> Prepared:
    if asr_seq2seq.is_seq2seq_processor(processor):
        return asr_seq2seq.preprocess(raw, processor, cfg)
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
        auto_model=asr_seq2seq.AutoModelForSpeechRecognition,
        head_modules=("lm_head",),
        prompt_module=prompt_module,
        after_mode=after_mode,
        on_load=on_load,
    ),
    data=DataSpec(load_processor=load_processor, preprocess=preprocess, collator=collator, make_batch=make_batch,
                  args=AsrArgs, example=("import numpy", 'numpy.zeros(16000, dtype="float32")'),
                  stream=streamed_inputs.speech),
    results=ResultSpec(main_metric="wer", greater_is_better=False, compute_metrics=compute_metrics, decode=decode,
                       preprocess_logits=preprocess_logits, format_prediction=format_prediction,
                       mistakes=mistakes.with_media(mistakes.transcripts(decode), "path",
                                                    _audio_clip),
                       metric_inputs=metric_inputs),
    training_defaults={"per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "warmup_steps": 0.1,
                       "train_sampling_strategy": "group_by_length", "length_column_name": "length"},
))
