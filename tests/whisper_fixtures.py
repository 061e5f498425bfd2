"""A tiny Whisper checkpoint for the speech task's sequence-to-sequence path: the random 1+1-layer Whisper of
test_convert_whisper.py written as a CTranslate2 folder and converted, so it has the processor (log-mel features
over a 1 s window, a byte-level tokenizer of a-z) and generation config a real converted tiny.en has."""

from __future__ import annotations

from pathlib import Path

import pytest


def build_tiny_whisper(folder: Path) -> Path:
    from test_convert_whisper import tiny_whisper, write_ct2_folder

    from tunesuite.models.convert_whisper import convert

    return convert(write_ct2_folder(folder / "ct2", tiny_whisper()), folder / "hf")


@pytest.fixture(scope="session")
def tiny_whisper_model(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


LANGUAGES = ("<|fr|>", "<|de|>")  # besides the tiny tokenizer's <|en|>


def build_tiny_multilingual_whisper(folder: Path, english_only: Path) -> Path:
    """The tiny Whisper with two more language tokens (embeddings grown) and a multilingual generation config:
    is_multilingual, lang_to_id and task_to_id as a converted multilingual checkpoint has them."""
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    model, processor = (auto.from_pretrained(english_only) for auto in (AutoModelForSpeechSeq2Seq, AutoProcessor))
    tokenizer = processor.tokenizer
    tokenizer.add_special_tokens({"additional_special_tokens": list(LANGUAGES)})
    model.resize_token_embeddings(len(tokenizer))
    generation = model.generation_config
    generation.is_multilingual = True
    generation.lang_to_id = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|en|>", *LANGUAGES)}
    generation.task_to_id = {t: tokenizer.convert_tokens_to_ids(f"<|{t}|>") for t in ("transcribe", "translate")}
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_multilingual_whisper(tiny_whisper_model, tmp_path_factory) -> Path:
    return build_tiny_multilingual_whisper(tmp_path_factory.mktemp("tiny-multilingual"), tiny_whisper_model)
