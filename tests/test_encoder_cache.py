"""The encoder cache (train/feature_cache/encoder.py) on the tiny converted Whisper (whisper_fixtures.py): with the
encoder frozen (frozen mode, with or without --trainable-layers; LoRA on the decoder only, --lora-layers 1; prompt mode,
its frames after the encoder) the decoder trains on the encoder's outputs computed once, and the run ends where the
uncached run ends: the same losses step by step, the same eval loss (generation included) and the same saved weights.
The log says why the cache is used or not (LoRA on the encoder, --cache-features never, too little memory)."""

from __future__ import annotations

import pytest
import torch
from asr_fixtures import write_tone_corpus
from safetensors.torch import load_file
from test_partial_cache import without_dropout
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

import tunesuite
from tunesuite.train.feature_cache import encoder
from tunesuite.train.trainer import TuneTrainer

RUN = {"num_train_epochs": 2, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
       "save_strategy": "no", "disable_tqdm": True, "seed": 0, "logging_steps": 1, "warmup_steps": 0,
       "learning_rate": 1e-2, "eval_strategy": "epoch"}
USED, OFF = "encoder cache: the frozen encoder's outputs", "feature cache off:"


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tone_corpus(tmp_path_factory.mktemp("cache-tones"), {"train": 8, "validation": 4})


@pytest.fixture(scope="module")
def still_whisper(tiny_whisper_model, tmp_path_factory):  # noqa: F811
    """No dropout: the cache runs the encoder in eval mode, the uncached run would differ by its random masks."""
    return without_dropout(tiny_whisper_model, tmp_path_factory.mktemp("still") / "whisper")


def _run(model, data, out, log, mode, **flags):
    """(result, the per-step training losses, the log)."""
    log.clear()
    losses: list[float] = []
    original = TuneTrainer.log

    def record(self, logs, *args, **kwargs):
        losses.extend([logs["loss"]] if "loss" in logs else [])
        return original(self, logs, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TuneTrainer, "log", record)
        result = tunesuite.finetune("asr", str(model), str(data), mode=mode, output_dir=str(out), **{**RUN, **flags})
    return result, losses, log.text


def _weights(out):
    files = sorted(out.glob("*.safetensors"))
    return {k: v for f in files for k, v in load_file(f).items()}


def _normal(monkeypatch):
    """The normal path for the next run, whatever the mode's flags."""
    monkeypatch.setattr(encoder, "why_not", lambda *a: "forced off by the test")


@pytest.mark.parametrize(("mode", "flags"), [("frozen", {"trainable_layers": 1}),
                                             ("lora", {"lora_layers": 1, "lora_dropout": 0.0}),
                                             ("prompt", {"num_virtual_tokens": 3})])
def test_cached_run_ends_where_the_normal_one_ends(still_whisper, tones, tmp_path, log, monkeypatch, mode, flags):
    cached, steps, said = _run(still_whisper, tones, tmp_path / "cached", log, mode, **flags)
    assert USED in said, said
    with monkeypatch.context() as patch:
        _normal(patch)
        normal, normal_steps, said_normal = _run(still_whisper, tones, tmp_path / "normal", log, mode, **flags)
    assert "forced off by the test" in said_normal and USED not in said_normal
    assert cached["train_loss"] == pytest.approx(normal["train_loss"], rel=1e-4)
    assert cached["eval_loss"] == pytest.approx(normal["eval_loss"], rel=1e-4)
    assert cached["eval_wer"] == pytest.approx(normal["eval_wer"])
    assert len(steps) == 4 and steps == pytest.approx(normal_steps, rel=1e-4)
    a, b = _weights(tmp_path / "cached"), _weights(tmp_path / "normal")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_lora_on_the_encoder_is_not_cached_and_says_why(still_whisper, tones, tmp_path, log):
    _, _, said = _run(still_whisper, tones, tmp_path / "all", log, "lora", max_steps=1, eval_strategy="no")
    assert USED not in said
    assert f"{OFF} the encoder trains" in said and "--lora-layers" in said


def test_frozen_cache_features_never_is_obeyed(still_whisper, tones, tmp_path, log):
    _, _, said = _run(still_whisper, tones, tmp_path / "never", log, "frozen", max_steps=1, eval_strategy="no",
                      cache_features="never")
    assert USED not in said and f"{OFF} turned off by --cache-features never" in said


def test_too_little_memory_refuses_the_cache(still_whisper, tones, tmp_path, log, monkeypatch):
    monkeypatch.setattr(encoder, "free_memory", lambda: 1000)
    _, _, said = _run(still_whisper, tones, tmp_path / "small", log, "frozen", max_steps=1, eval_strategy="no")
    assert USED not in said
    assert f"{OFF} the encoder outputs of 8 clips would take" in said and "--bf16" in said


def test_cache_size_counts_frames_width_and_precision(still_whisper):
    from transformers import AutoModelForSpeechSeq2Seq

    model = AutoModelForSpeechSeq2Seq.from_pretrained(str(still_whisper))
    assert encoder.cache_bytes(model, 3, torch.float32) == 3 * 50 * 16 * 4
    assert encoder.cache_bytes(model, 3, torch.bfloat16) == 3 * 50 * 16 * 2


def test_bf16_keeps_the_cache_in_bf16_and_evaluates(still_whisper, tones, tmp_path, log):
    """--bf16 on a CPU: the states stored in bf16, clips still collated in fp32, evaluation generating from them."""
    result, steps, said = _run(still_whisper, tones, tmp_path / "bf16", log, "frozen", bf16=True, num_train_epochs=1)
    assert USED in said and "(bfloat16," in said
    assert len(steps) == 2 and "eval_wer" in result and result["eval_loss"] > 0
