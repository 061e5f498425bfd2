"""Speech recognition data: find the audio/text columns, pick or build the vocabulary, decode and filter audio."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from datasets import Dataset

from tunesuite import data
from tunesuite.data import audio, audio_columns, cache_keys
from tunesuite.data.audio_columns import AUDIO_GUESSES, SKIP_HINT, undecoded
from tunesuite.errors import TunesuiteError
from tunesuite.tasks import ctc

log = logging.getLogger("tunesuite")
TEXT_GUESSES = ("text", "sentence", "transcription", "transcript", "normalized_text")


def find_column(split: Dataset, wanted: str | None, guesses: tuple[str, ...], flag: str, what: str) -> str:
    """The flag's column, else (for audio) a column typed Audio, else the first usual name present."""
    if flag == "--audio-column":
        return audio_columns.audio_column(split, wanted)
    return data.find_column(split, wanted, list(guesses), flag, what)


def normalised_texts(split: Dataset, column: str, normalise, key: str) -> list[str]:
    texts = []
    for i, text in enumerate(split[column]):
        if text is not None and not isinstance(text, str):
            raise TunesuiteError(f"{key} split, row {i}, column {column!r}: expected a transcript, got {text!r}; "
                                 "set --text-column")
        texts.append(normalise(text) if text else "")
    return texts


def choose_tokenizer(processor: Any, texts: list[str], model_config: Any) -> tuple[Any, bool]:
    """The model's own CTC tokenizer when it spells every training transcript (maybe in upper case), else a new
    one built from them. Returns (tokenizer, upper_case)."""
    own = getattr(processor, "tokenizer", None)
    if own is not None and hasattr(own, "word_delimiter_token"):
        for upper in (False, True):
            if not ctc.missing_symbols(texts, own, upper):
                log.info("using the model's own vocabulary (%d symbols)%s", len(own), ", upper case" if upper else "")
                return own, upper
        missing = sorted(ctc.missing_symbols(texts, own))
        log.info("the model's vocabulary lacks %s: building a new one from the training transcripts",
                 ", ".join(repr(c) for c in missing[:10]))
    tokenizer = ctc.make_tokenizer(ctc.build_vocab(texts))
    old = getattr(model_config, "vocab_size", None)
    change = f"resizing the CTC head from {old} to {len(tokenizer)} outputs" if old != len(tokenizer) else \
        "the CTC head keeps its size"
    log.info("vocabulary of %d symbols built from the training transcripts (vocab.json); %s; the head is "
             "re-initialised and trains in every mode", len(tokenizer), change)
    return tokenizer, False



def utterance(i: int, cell: Any, text: str, key: str, ctx: dict[str, Any]) -> tuple[np.ndarray | None, str]:
    """Row i's clip at the task's rate, or None and why the row is dropped: an empty transcript (an error unless
    --skip-bad-files), unreadable audio, or a duration outside --min-duration/--max-duration."""
    args, rate, column = ctx["args"], ctx["rate"], ctx["audio_column"]
    if not text:
        if not args.skip_bad_files:
            raise TunesuiteError(f"{key} split, row {i} ({audio.describe(cell, ctx['base'])}): empty transcript in "
                                 f"column {ctx['text_column']!r} (after normalisation); fill or drop the row, "
                                 f"{SKIP_HINT}")
        return None, "empty transcript"
    samples = audio_columns.load_cell(cell, rate, ctx["base"], f"{key} split, row {i}, column {column!r}",
                                      args.skip_bad_files)
    if samples is None:
        return None, "unreadable audio"
    if not audio.duration_ok(len(samples), rate, args.min_duration, args.max_duration):
        return None, "outside --min-duration/--max-duration"
    return samples, ""


def drop_marked(done: Dataset, key: str, ctx: dict[str, Any]) -> Dataset:
    """The rows whose `drop` reason is empty; the others counted by reason in one log line. None left: an error."""
    dropped = Counter(r for r in done["drop"] if r)
    if dropped:
        log.warning("%s split: dropped %d of %d utterances (%s)", key, sum(dropped.values()), len(done),
                    "; ".join(f"{n} {why}" for why, n in dropped.items()))
        done = done.filter(lambda reason: not reason, input_columns="drop")
    if len(done) == 0:
        raise TunesuiteError(f"no usable utterances left in the {key} split ({ctx['sources'][key]}; dropped: "
                             f"{dict(dropped)}); check --min-duration/--max-duration and the data")
    return done


def convert(split: Dataset, key: str, texts: list[str], ctx: dict[str, Any]) -> Dataset:
    """input_values / labels / length, plus path and reference for reports; drops rows it has to, and says why."""
    args, rate, column = ctx["args"], ctx["rate"], ctx["audio_column"]
    shortest = ctc.min_samples(ctx["config"])  # shorter clips would crash the conv encoder: padded with silence

    def rows(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in ("input_values", "labels", "length", "path", "reference", "drop",
                                                "padded")}
        for i, cell in zip(indices, batch[column], strict=True):
            values, ids, short = np.zeros(0, np.float32), [], False
            samples, reason = utterance(i, cell, texts[i], key, ctx)
            if samples is not None:
                ids, short = ctx["tokenizer"](texts[i]).input_ids, len(samples) < shortest
                if key == "train" and ctc.frames_needed(ids) > ctc.output_frames(max(len(samples), shortest),
                                                                                 ctx["config"]):
                    reason = "transcript longer than the model's output frames"
                else:
                    samples = audio.pad_to(samples, shortest)
                    values = ctx["feature_extractor"](samples, sampling_rate=rate).input_values[0]
            out["input_values"].append(np.asarray(values, dtype=np.float32))
            out["labels"].append(ids if not reason else [])
            out["length"].append(len(values))
            out["path"].append(audio.describe(cell, ctx["base"]))
            out["reference"].append(texts[i])
            out["drop"].append(reason)
            out["padded"].append(short and not reason)
        return out

    settings = {"rate": rate, "shortest": shortest, "min_duration": args.min_duration,
                "max_duration": args.max_duration, "skip_bad_files": args.skip_bad_files,
                "feature_extractor": ctx["feature_extractor"].to_dict(), "vocabulary": ctx["tokenizer"].get_vocab()}
    done = cache_keys.keyed_map(split, rows, column=column, base=ctx["base"], what=f"{key} audio", settings=settings,
                                batched=True, with_indices=True, batch_size=64, writer_batch_size=64,
                                remove_columns=split.column_names, num_proc=ctx["workers"],
                                desc=f"decoding {key} audio")
    done = drop_marked(done, key, ctx)
    if any(done["padded"]):
        log.info("%s split: padded %d clip(s) shorter than %d samples (%.1f ms, the least the model's feature "
                 "encoder takes) with silence", key, sum(done["padded"]), shortest, 1000 * shortest / rate)
    unseen = {c for t in texts for c in t} - ctc.tokenizer_symbols(ctx["tokenizer"])
    if unseen:
        log.warning("%s split: characters never seen in training become <unk>: %s", key,
                    ", ".join(repr(c) for c in sorted(unseen)[:10]))
    return done.remove_columns(["drop", "padded"])


def speech_splits(raw: Any, cfg: Any) -> tuple[dict[str, Any], tuple[str, str], Callable[[str], str]]:
    """(the run's splits with only the audio (undecoded) and text columns, (audio column, text column), the run's
    text normaliser): what CTC and seq2seq preparation share."""
    args = cfg.task_args
    splits = data.select_splits(raw, cfg.data, cfg.training.seed)
    audio_column = find_column(splits["train"], args.audio_column, AUDIO_GUESSES, "--audio-column", "audio")
    text_column = find_column(splits["train"], args.text_column, TEXT_GUESSES, "--text-column", "transcript")
    for key, split in splits.items():
        data.require_columns(split, [audio_column], key, "--audio-column")
        data.require_columns(split, [text_column], key, "--text-column")
    splits = {k: undecoded(s.select_columns(list(dict.fromkeys([audio_column, text_column]))), audio_column)
              for k, s in splits.items()}
    return splits, (audio_column, text_column), ctc.normaliser(args.chars_to_ignore or [], args.lowercase)


def prepare(raw: Any, processor: Any, cfg: Any, model_config: Any) -> dict[str, Any]:
    """Model-ready splits and the (maybe new) tokenizer, for asr.preprocess."""
    args = cfg.task_args
    splits, (audio_column, text_column), normalise = speech_splits(raw, cfg)
    texts = {k: normalised_texts(s, text_column, normalise, k) for k, s in splits.items()}
    tokenizer, upper = choose_tokenizer(processor, [t for t in texts["train"] if t], model_config)
    if upper:
        texts = {k: [t.upper() for t in v] for k, v in texts.items()}
    feature_extractor = getattr(processor, "feature_extractor", processor)
    ctx = {"args": args, "rate": feature_extractor.sampling_rate, "audio_column": audio_column,
           "text_column": text_column, "base": data.manifest_dir(cfg.data.dataset), "tokenizer": tokenizer,
           "feature_extractor": feature_extractor, "config": model_config,
           "workers": cfg.data.preprocessing_num_workers,
           "sources": {key: data.split_source(cfg.data, key) for key in splits}}
    ready = {key: convert(split, key, texts[key], ctx) for key, split in splits.items()}
    return {"splits": ready, "tokenizer": tokenizer, "feature_extractor": feature_extractor,
            "columns": (audio_column, text_column)}
