"""Speech recognition: batches, greedy CTC decoding, WER/CER, and the hooks the model gets (asr.py's TaskSpec)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..core import prompts
from ..data import audio
from ..registry import Prepared
from . import ctc, metrics

log = logging.getLogger("tunesuite")


def collator(processor: Any):
    """Pads audio (with an attention mask when the feature extractor uses one) and labels (with -100)."""
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
    """Frame ids instead of (time x vocabulary) logits: evaluation keeps a small array per utterance."""
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(-1)


def decode(predictions: Any, processor: Any, config: Any) -> list[dict[str, str]]:
    """Greedy CTC: best symbol per frame, repeats merged, blanks dropped (as transformers' pipeline does)."""
    tokenizer = processor.tokenizer
    ids = ctc.greedy_ids(predictions, tokenizer.pad_token_id)
    return [{"text": text} for text in tokenizer.batch_decode(ids)]


def metric_inputs(prepared: Prepared):
    """(hypotheses, references) as strings: what WER/CER and `--metric` metrics score."""
    tokenizer = prepared.processor.tokenizer

    def inputs(eval_pred: Any) -> tuple[list[str], list[str]]:
        hypotheses = [row["text"] for row in decode(eval_pred.predictions, prepared.processor, None)]
        labels = np.where(eval_pred.label_ids < 0, tokenizer.pad_token_id, eval_pred.label_ids)
        return hypotheses, tokenizer.batch_decode(labels, group_tokens=False)

    return inputs


def compute_metrics(prepared: Prepared):
    inputs = metric_inputs(prepared)

    def compute(eval_pred: Any) -> dict[str, float]:
        hypotheses, references = inputs(eval_pred)
        return metrics.word_char_error_rates(references, hypotheses)

    return compute


def format_prediction(record: dict[str, Any]) -> dict[str, Any]:
    """predictions.jsonl: path, reference, hypothesis and the utterance's own WER and CER."""
    scores = metrics.word_char_error_rates([record["reference"]], [record["text"]])
    return {"path": record.get("path"), "reference": record["reference"], "hypothesis": record["text"], **scores}


def make_batch(processor: Any, items: list, config: Any) -> dict[str, torch.Tensor]:
    """Audio paths, bytes, {array, sampling_rate} dicts or arrays (at the model's rate) -> padded inputs."""
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
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if args.freeze_feature_encoder and hasattr(base, "freeze_feature_encoder"):
        training = any(p.requires_grad for p in base.base_model.feature_extractor.parameters())
        base.freeze_feature_encoder()
        if training:
            log.info("convolutional feature encoder frozen (--no-freeze-feature-encoder trains it too)")
    return on_load(model)


def on_load(model: torch.nn.Module) -> torch.nn.Module:
    """Every CTC model, training or loaded: padding frames score as blanks; adapters save no embeddings."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(model, "peft_config"):
        # when vocab_size changed, peft saves the "resized" embeddings and asks the model for them; a CTC model
        # has none (transformers raises) and its new head is saved through modules_to_save already
        base.get_input_embeddings = base.get_output_embeddings = lambda: None
    if not getattr(base, "_tunesuite_blanks_padding", False):
        base.register_forward_hook(_blank_padded_frames, with_kwargs=True)
        base._tunesuite_blanks_padding = True
    return model


def prompt_module(model: torch.nn.Module, args: Any, model_path: str) -> torch.nn.Module:
    """Learnable frames ahead of the audio, after the feature projection (core/prompt_modules.py, wav2vec2 section)."""
    return prompts.attach(model, {"num_virtual_tokens": args.num_virtual_tokens}, "speech")
