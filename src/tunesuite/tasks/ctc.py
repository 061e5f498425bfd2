"""CTC text side: transcript normalisation, the character vocabulary, output-frame arithmetic, greedy decoding."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

PAD, UNK, DELIMITER = "<pad>", "<unk>", "|"  # <pad> doubles as the CTC blank
DEFAULT_CHARS_TO_IGNORE = [",", "?", ".", "!", "-", ";", ":", '"', "“", "”", "‘", "%", "«", "»", "…", "(", ")",
                           "[", "]", "{", "}", "�"]


def normaliser(chars_to_ignore: Iterable[str], lowercase: bool = True):
    """A function: transcript -> normalised transcript (characters removed, case folded, spaces collapsed).

    Empty strings in `chars_to_ignore` are skipped: `--chars-to-ignore ""` removes nothing."""
    chars = "".join(chars_to_ignore)
    pattern = re.compile("[" + re.escape(chars) + "]") if chars else None

    def normalise(text: str) -> str:
        text = text.replace("’", "'")  # typographic apostrophe: "don’t" is "don't"
        if pattern is not None:
            text = pattern.sub("", text)
        text = text.lower() if lowercase else text
        return " ".join(text.split())

    return normalise


def build_vocab(transcripts: Iterable[str]) -> dict[str, int]:
    """<pad>=0 (CTC blank), <unk>=1, the word delimiter |=2, then every character seen, sorted."""
    chars = sorted({c for text in transcripts for c in text} - {" "})
    return {token: i for i, token in enumerate([PAD, UNK, DELIMITER, *chars])}


def make_tokenizer(vocab: dict[str, int]) -> Any:
    from transformers import Wav2Vec2CTCTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vocab.json"
        path.write_text(json.dumps(vocab, ensure_ascii=False))
        return Wav2Vec2CTCTokenizer(str(path), unk_token=UNK, pad_token=PAD, word_delimiter_token=DELIMITER,
                                    bos_token=None, eos_token=None)


def tokenizer_symbols(tokenizer: Any) -> set[str]:
    """The characters a CTC tokenizer can emit, with the word delimiter standing for the space."""
    vocab = set(tokenizer.get_vocab())
    delimiter = getattr(tokenizer, "word_delimiter_token", None)
    return vocab | ({" "} if delimiter in vocab else set())


def missing_symbols(transcripts: Iterable[str], tokenizer: Any, upper: bool = False) -> set[str]:
    symbols = tokenizer_symbols(tokenizer)
    return {c for text in transcripts for c in (text.upper() if upper else text)} - symbols


def output_frames(num_samples: int, config: Any) -> int:
    """How many frames (CTC time steps) the model emits for `num_samples` input samples."""
    frames = num_samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        frames = max((frames - kernel) // stride + 1, 0)
    if getattr(config, "add_adapter", False):
        for _ in range(config.num_adapter_layers):
            frames = max((frames - 1) // config.adapter_stride + 1, 0)
    return frames


def min_samples(config: Any) -> int:
    """The shortest input the convolutional feature encoder takes (it yields one frame); shorter ones crash it."""
    need = 1
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride, strict=True))):
        need = (need - 1) * stride + kernel
    return need


def frames_needed(label_ids: list[int]) -> int:
    """CTC needs one frame per label, plus a blank between each pair of repeated labels."""
    return len(label_ids) + sum(a == b for a, b in zip(label_ids, label_ids[1:], strict=False))


def greedy_ids(predictions: Any, pad_id: int) -> list[list[int]]:
    """Frame-level ids from logits (batch, time, vocab) or from ids already reduced (padded with -100)."""
    array = np.asarray(predictions)
    ids = array.argmax(-1) if array.ndim == 3 else array
    return [[int(i) if i >= 0 else pad_id for i in row] for row in ids]
