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
