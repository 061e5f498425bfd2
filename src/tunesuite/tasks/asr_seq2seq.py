"""Speech recognition with sequence-to-sequence models (Whisper first): the speech task's other half beside CTC.

A checkpoint whose config class `AutoModelForSpeechSeq2Seq` maps (not a name check) trains on its own tokenizer's
ids (with the prefix tokens, padded with -100; the model prepends its decoder start), reads Whisper's log-mel
features (padded to the model's window, 30 s for the released models), and is scored on what `generate` writes:
the Trainer generates in evaluation (train/trainer.py) and so does the predictor. Text is normalised as the CTC
path normalises it (ctc.normaliser) for training targets and for scoring.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCTC, AutoModelForSpeechSeq2Seq, AutoProcessor

from tunesuite import data
from tunesuite.data import audio, cache_keys
from tunesuite.errors import TunesuiteError
from tunesuite.registry import Prepared
from tunesuite.tasks import asr_data, metrics, speech_language

log = logging.getLogger("tunesuite")
# processor -> the run's text normaliser: generated text is scored (and written) as references are normalised
_NORMALISERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_seq2seq_config(config: Any) -> bool:
    """Whether transformers maps this config class to a speech sequence-to-sequence model."""
    return type(config) in AutoModelForSpeechSeq2Seq._model_mapping


def is_seq2seq_processor(processor: Any) -> bool:
    """A processor of a sequence-to-sequence checkpoint: features in `input_features`, a tokenizer without CTC's
    word delimiter."""
    features = getattr(processor, "feature_extractor", processor)
    tokenizer = getattr(processor, "tokenizer", None)
    return ("input_features" in getattr(features, "model_input_names", ()) and tokenizer is not None
            and not hasattr(tokenizer, "word_delimiter_token"))


def generates(model: Any) -> bool:
    """A model scored on its generated text: an encoder-decoder that can generate."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base.config, "is_encoder_decoder", False)) and base.can_generate()


class _Mappings:
    """The two auto classes' model mappings seen as one (`in`, `[]`, `get`), as the loaders ask them."""

    def get(self, config_class: Any, default: Any = None) -> Any:
        for auto in (AutoModelForSpeechSeq2Seq, AutoModelForCTC):
            if config_class in auto._model_mapping:
                return auto._model_mapping[config_class]
        return default

    def __contains__(self, config_class: Any) -> bool:
        return self.get(config_class) is not None

    def __getitem__(self, config_class: Any) -> Any:
        found = self.get(config_class)
        if found is None:
            raise KeyError(config_class)
        return found


class AutoModelForSpeechRecognition:
    """The speech task's model class: AutoModelForSpeechSeq2Seq for a checkpoint it maps, else AutoModelForCTC."""

    _model_mapping = _Mappings()

    @staticmethod
    def auto_class(path: Any, **kwargs: Any) -> Any:
        config = kwargs.get("config")
        if config is None:
            options = {k: kwargs[k] for k in ("revision", "cache_dir") if kwargs.get(k) is not None}
            config = AutoConfig.from_pretrained(path, **options)
        return AutoModelForSpeechSeq2Seq if is_seq2seq_config(config) else AutoModelForCTC

    @classmethod
    def from_pretrained(cls, path: Any, *args: Any, **kwargs: Any) -> Any:
        return cls.auto_class(path, **kwargs).from_pretrained(path, *args, **kwargs)

    @classmethod
    def name_for(cls, path: Any) -> str:
        """The transformers class name that loads `path` (the model card's snippet)."""
        return cls.auto_class(path).__name__


def load_processor(path: str, cfg: Any) -> Any:
    """The checkpoint's own processor (feature extractor + tokenizer): its vocabulary is the model's."""
    kwargs = {"revision": cfg.model.revision} if cfg else {}
    try:
        processor = AutoProcessor.from_pretrained(path, **kwargs)
    except (OSError, ValueError, TypeError) as e:
        raise TunesuiteError(f"--model {path}: a sequence-to-sequence speech model needs its processor (feature "
                             f"extractor and tokenizer) saved beside it ({str(e).strip().splitlines()[0]}); "
                             "save one with the model (tunesuite convert writes it)") from None
    if not is_seq2seq_processor(processor):
        raise TunesuiteError(f"--model {path}: its processor has no tokenizer or no log-mel feature extractor; "
                             "save the model's own processor beside it")
    args = getattr(cfg, "task_args", None)
    if args is not None:
        generation = _generation_config(path, cfg)
        if args.language or args.speech_task:
            code, task = speech_language.check(generation, args.language, args.speech_task, path)
            speech_language.remember(processor.tokenizer, code, task)
        elif getattr(generation, "is_multilingual", False) and not getattr(processor.tokenizer, "language", None):
            log.warning("--model %s is multilingual and no --language is set: the targets carry no language token "
                        "while generation detects one; pass --language (e.g. --language en)", path)
    return processor


def _generation_config(path: str, cfg: Any) -> Any:
    """The checkpoint's generation config (None when it has none: then it is not multilingual)."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir)
    except OSError:
        return None


def window_samples(feature_extractor: Any) -> int:
    """The longest clip the encoder sees: Whisper pads (and cuts) every clip to this many samples."""
    return int(getattr(feature_extractor, "n_samples", 0)) or 30 * feature_extractor.sampling_rate


def _convert(split: Any, key: str, texts: list[str], ctx: dict[str, Any]) -> Any:
    """Rows -> input_features (the samples, under the name the model's forward takes so the Trainer keeps the
    column; log-mel features are computed per batch), labels, length, path, reference;
    drops what the model cannot take (longer than its window, transcripts longer than its decoder), and says why."""
    args, rate, column, tokenizer = ctx["args"], ctx["rate"], ctx["audio_column"], ctx["tokenizer"]
    window, longest_label, lead = ctx["window"], ctx["max_target"], ctx["prefix"]

    def rows(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in ("input_features", "labels", "length", "path", "reference", "drop")}
        for i, cell in zip(indices, batch[column], strict=True):
            ids: list[int] = []
            samples, reason = asr_data.utterance(i, cell, texts[i], key, ctx)
            if samples is None:
                samples = np.zeros(0, np.float32)
            else:  # --language: the prefix generate starts with, from the generation config's table
                ids = ([*lead, *tokenizer(texts[i], add_special_tokens=False).input_ids, tokenizer.eos_token_id]
                       if lead else tokenizer(texts[i]).input_ids)
                if len(samples) > window:
                    reason = f"longer than the model's {window / rate:g} s window"
                elif len(ids) > longest_label:
                    reason = f"transcript longer than the decoder's {longest_label} tokens"
            out["input_features"].append(np.asarray(samples if not reason else [], dtype=np.float32))
            out["labels"].append(ids if not reason else [])
            out["length"].append(len(ids))
            out["path"].append(audio.describe(cell, ctx["base"]))
            out["reference"].append(texts[i])
            out["drop"].append(reason)
        return out

    settings = {"rate": rate, "window": window, "max_target": longest_label, "min_duration": args.min_duration,
                "max_duration": args.max_duration, "skip_bad_files": args.skip_bad_files,
                "vocabulary_size": len(tokenizer), "prefix": lead or list(getattr(tokenizer, "prefix_tokens", []))}
    done = cache_keys.keyed_map(split, rows, column=column, base=ctx["base"], what=f"{key} audio", settings=settings,
                                batched=True, with_indices=True, batch_size=64, writer_batch_size=64,
                                remove_columns=split.column_names, num_proc=ctx["workers"],
                                desc=f"decoding {key} audio")
    return asr_data.drop_marked(done, key, ctx).remove_columns(["drop"])


def preprocess(raw: Any, processor: Any, cfg: Any) -> Prepared:
    """Splits as samples + token ids of the normalised transcripts; the model keeps its own vocabulary."""
    args = cfg.task_args
    splits, (audio_column, text_column), normalise = asr_data.speech_splits(raw, cfg)
    _NORMALISERS[processor] = normalise
    texts = {k: asr_data.normalised_texts(s, text_column, normalise, k) for k, s in splits.items()}
    config = AutoConfig.from_pretrained(cfg.model.model, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir)
    features = processor.feature_extractor
    language = getattr(processor.tokenizer, "language", None)
    lead = speech_language.prefix(_generation_config(cfg.model.model, cfg), language, processor.tokenizer.task) \
        if language else None
    ctx = {"prefix": lead, "args": args, "rate": features.sampling_rate, "audio_column": audio_column,
           "text_column": text_column,
           "base": data.manifest_dir(cfg.data.dataset), "tokenizer": processor.tokenizer,
           "window": window_samples(features), "max_target": int(getattr(config, "max_target_positions", 448)),
           "workers": cfg.data.preprocessing_num_workers,
           "sources": {key: data.split_source(cfg.data, key) for key in splits}}
    ready = {key: _convert(split, key, texts[key], ctx) for key, split in splits.items()}
    reports = {k: v.select_columns(["path", "reference"]) for k, v in ready.items() if k != "train"}
    ready = {k: v.with_format("numpy", columns=["input_features", "labels", "length"], output_all_columns=True)
             for k, v in ready.items()}
    return Prepared(processor, ready["train"], ready.get("eval"), ready.get("test"), {}, raw=reports,
                    input_columns=["path"], reference_column="reference")


def collator(processor: Any):
    """Log-mel features (padded to the model's window) and labels padded with -100; a leading decoder start token
    is dropped, since the model prepends it when it shifts the labels right."""
    features, start = processor.feature_extractor, processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>")

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = features([np.asarray(r["input_features"], dtype=np.float32) for r in rows],
                         sampling_rate=features.sampling_rate, return_tensors="pt")
        labels = [list(r["labels"]) for r in rows]
        if labels and all(ids and ids[0] == start for ids in labels):
            labels = [ids[1:] for ids in labels]
        width = max(len(ids) for ids in labels)
        out = {"input_features": batch["input_features"]}
        out["labels"] = torch.tensor([ids + [-100] * (width - len(ids)) for ids in labels], dtype=torch.long)
        return out

    return collate


def make_batch(processor: Any, items: list, config: Any) -> dict[str, torch.Tensor]:
    """Audio paths, bytes, {array, sampling_rate} dicts or arrays -> log-mel features the encoder takes."""
    features = processor.feature_extractor
    rate = features.sampling_rate
    samples = [audio.load(item, rate) for item in items]
    longest = max(len(s) for s in samples)
    if longest > window_samples(features):
        log.warning("a clip of %.1f s is longer than the model's %g s window: only its start is read in one "
                    "batch (predict transcribes a long clip whole, in windows)",
                    longest / rate, window_samples(features) / rate)
    return {"input_features": features(samples, sampling_rate=rate, return_tensors="pt")["input_features"]}


def decode(predictions: Any, processor: Any, config: Any) -> list[dict[str, str]]:
    """Generated ids (padded with -100 between batches) -> text, normalised as the run's references are."""
    tokenizer = processor.tokenizer
    ids = np.asarray(predictions.cpu() if isinstance(predictions, torch.Tensor) else predictions)
    ids = np.where(ids < 0, tokenizer.pad_token_id, ids)
    normalise = _NORMALISERS.get(processor)
    texts = [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return [{"text": normalise(text) if normalise else text} for text in texts]


def metric_inputs(prepared: Prepared):
    """(hypotheses, references) as strings: the generated text and the labels' text."""
    tokenizer = prepared.processor.tokenizer

    def inputs(eval_pred: Any) -> tuple[list[str], list[str]]:
        hypotheses = [row["text"] for row in decode(eval_pred.predictions, prepared.processor, None)]
        labels = np.where(eval_pred.label_ids < 0, tokenizer.pad_token_id, eval_pred.label_ids)
        references = [t.strip() for t in tokenizer.batch_decode(labels, skip_special_tokens=True)]
        return hypotheses, references

    return inputs


def compute_metrics(prepared: Prepared):
    return metrics.error_rates_of(metric_inputs(prepared))


def on_load(model: torch.nn.Module) -> torch.nn.Module:
    """A sequence-to-sequence model, training or loaded: generation transcribes without timestamps, and timestamp
    tokens are suppressed: transformers' Whisper generate loops forever over a window whose output holds two of them
    in a row when no timestamps were asked for (seen on a tiny prompt-tuned Whisper's test split)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    generation = getattr(base, "generation_config", None)
    if generation is not None and getattr(generation, "no_timestamps_token_id", None) is not None:
        generation.return_timestamps = False
        timestamps = range(generation.no_timestamps_token_id + 1, base.config.vocab_size)
        generation.suppress_tokens = sorted({*(generation.suppress_tokens or ()), *timestamps})
    return model
