"""Speech test data: a tiny wav2vec2 CTC model built from a config, and audio the tests generate themselves.

Tone speech: every letter is a short sine at its own pitch, words are separated by silence; a tiny model
learns to read it in a few dozen steps. Real speech comes from espeak-ng where the tests need it.
"""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RATE = 16000
TONES = {"a": 400.0, "b": 700.0, "c": 1000.0, "d": 1400.0, "e": 1900.0}
MODEL_LETTERS = "abcd"  # the tiny model's own vocabulary lacks "e": tone data makes it grow its head
SEED = 0
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (make system-packages installs it)")


def tone_audio(text: str, rate: int = RATE, rng: random.Random | None = None) -> np.ndarray:
    """60 ms per letter (plus 20 ms gap), 100 ms between words, slight random loudness and noise."""
    rng = rng or random.Random(SEED)
    parts = [np.zeros(int(0.05 * rate))]
    for char in text:
        if char == " ":
            parts.append(np.zeros(int(0.1 * rate)))
            continue
        t = np.arange(int(0.06 * rate)) / rate
        parts += [rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * TONES[char] * t), np.zeros(int(0.02 * rate))]
    parts.append(np.zeros(int(0.05 * rate)))
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 0.01, sum(len(p) for p in parts))
    return (np.concatenate(parts) + noise).astype(np.float32)


def random_text(rng: random.Random, letters: str = "abcde") -> str:
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 2)))


def write_split(folder: Path, name: str, texts: list[str], rng: random.Random, rate: int = RATE) -> Path:
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "text"])
        for i, text in enumerate(texts):
            sf.write(folder / "wavs" / f"{name}-{i}.wav", tone_audio(text, rate, rng), rate)
            writer.writerow([f"wavs/{name}-{i}.wav", text.upper()])  # upper case: normalisation lower-cases
    return folder / f"{name}.csv"


def write_tone_corpus(folder: Path, sizes: dict[str, int], seed: int = SEED) -> Path:
    rng = random.Random(seed)
    for name, n in sizes.items():
        write_split(folder, name, [random_text(rng) for _ in range(n)], rng)
    return folder


def build_tiny_model(folder: Path, letters: str = MODEL_LETTERS, seed: int = SEED) -> Path:
    """A 2-layer, hidden-32 wav2vec2 CTC model with a small conv stack (5 ms frames) and its own vocabulary."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

    from tunesuite.tasks import ctc

    tokenizer = ctc.make_tokenizer(ctc.build_vocab([letters]))
    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_feat_extract_layers=3, conv_dim=(16, 32, 32),
        conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer", do_stable_layer_norm=True, layerdrop=0.0, mask_time_prob=0.0,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    features = Wav2Vec2FeatureExtractor(sampling_rate=RATE, do_normalize=True, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_w2v(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-w2v"))


@pytest.fixture(scope="session")
def tone_data(tmp_path_factory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"), {"train": 48, "validation": 8, "test": 8})
