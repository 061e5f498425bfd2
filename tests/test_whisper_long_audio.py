"""Predict on clips longer than a Whisper window (the tiny Whisper's is 1 s): every window is decoded and their
texts merged where they overlap; short clips keep the batched path; a LoRA model reads long clips with its adapters
(the same text as the adapters merged into the weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

import tunesuite.tasks  # noqa: F401  (registers the tasks)
from tunesuite.models.predictor import Predictor
from tunesuite.registry import find_task

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo", "lima"]
RATE = 16000
# 3.5 s in 1 s windows overlapping by 1/6 s on each side: windows start every 0.667 s -> 5 windows
CLIP, WINDOWS = int(3.5 * RATE), 5


def _loaded(path):
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    return AutoModelForSpeechSeq2Seq.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def _scripted(model, tokenizer, calls: list[int]):
    """model.generate runs for real (its batch counted), then answers window k with words 2k..2k+3, so
    neighbouring windows share two words, as speech in an overlap does."""
    real = model.generate

    def generate(*args, **kwargs):
        out = real(*args, **kwargs)
        rows = []
        for _ in range(out.shape[0]):
            k = len(calls)
            calls.append(k)
            text = " " + " ".join(WORDS[2 * k: 2 * k + 4])
            rows.append([model.generation_config.decoder_start_token_id,
                         *tokenizer(text, add_special_tokens=False).input_ids, tokenizer.eos_token_id])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])

    model.generate = generate


def test_a_long_clip_is_read_in_every_window_and_merged(tiny_whisper_model):  # noqa: F811
    model, processor = _loaded(tiny_whisper_model)
    calls: list[int] = []
    _scripted(model, processor.tokenizer, calls)
    clip = np.random.RandomState(0).randn(CLIP).astype(np.float32) * 0.1
    predicted = Predictor(find_task("asr"), model, processor).predict([clip], batch_size=2)
    assert len(calls) == WINDOWS
    assert predicted == [{"text": " ".join(WORDS[: 2 * WINDOWS + 2])}]  # the last window's words end it


def test_short_clips_keep_their_batch_and_order_beside_long_ones(tiny_whisper_model):  # noqa: F811
    model, processor = _loaded(tiny_whisper_model)
    noise = np.random.RandomState(1).randn(CLIP).astype(np.float32) * 0.1
    short = [noise[:RATE // 2], noise[RATE: 2 * RATE - 100]]
    predictor = Predictor(find_task("asr"), model, processor)
    alone = predictor.predict(short)
    mixed = predictor.predict([short[0], noise, short[1]])
    assert [mixed[0], mixed[2]] == alone and mixed[1]["text"]
    first_window = predictor.predict([noise[:RATE]])[0]["text"]
    assert len(mixed[1]["text"]) > len(first_window)  # more than the first window's text


def test_lora_reads_long_clips_with_its_adapters(tiny_whisper_model):  # noqa: F811
    from peft import LoraConfig, get_peft_model

    model, processor = _loaded(tiny_whisper_model)
    adapted = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 2.0)
    clip = np.random.RandomState(2).randn(CLIP).astype(np.float32) * 0.1
    task = find_task("asr")
    with_adapters = Predictor(task, adapted, processor).predict([clip])
    merged, _ = _loaded(tiny_whisper_model)
    merged.load_state_dict(adapted.merge_and_unload().state_dict())
    assert Predictor(task, merged, processor).predict([clip]) == with_adapters
    plain, _ = _loaded(tiny_whisper_model)
    assert Predictor(task, plain, processor).predict([clip]) != with_adapters, "the adapters were not used"


@pytest.mark.parametrize("seconds", [0.5, 1.0])
def test_clips_within_the_window_take_one_generate_each(tiny_whisper_model, seconds):  # noqa: F811
    model, processor = _loaded(tiny_whisper_model)
    calls: list[int] = []
    _scripted(model, processor.tokenizer, calls)
    clip = np.zeros(int(seconds * RATE), np.float32)
    assert Predictor(find_task("asr"), model, processor).predict([clip, clip]) == [
        {"text": " ".join(WORDS[0:4])}, {"text": " ".join(WORDS[2:6])}]
    assert len(calls) == 2
