"""Audio classification from a Whisper encoder (WhisperForAudioClassification, what AutoModelForAudioClassification
gives for a Whisper config): the clips padded to the encoder's window, frozen mode's head cache ending where the
normal path ends, LoRA on the encoder's attention, and prompt mode refused in one line. The matrix
(test_matrix.py, setup whisper-audio) runs every mode, reloads and checks the loss falls."""

from __future__ import annotations

import pytest
import torch
from audio_fixtures import PITCHES, pitch_clip, write_pitch_csvs
from conftest import model_after_mode, trainable_names
from test_partial_cache import without_dropout
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

import tunesuite

RUN = {"num_train_epochs": 2, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "warmup_steps": 0,
       "disable_tqdm": True, "seed": 3, "save_strategy": "no", "eval_strategy": "no", "augment": False,
       "learning_rate": 1e-2}
TASK = "audio-classification"


@pytest.fixture(scope="module")
def pitches(tmp_path_factory):
    return write_pitch_csvs(tmp_path_factory.mktemp("whisper-pitches"), {"train": 16, "validation": 6, "test": 6})


def test_frozen_head_cache_ends_where_the_normal_path_ends(tiny_whisper_model, pitches, tmp_path, log):  # noqa: F811
    model = without_dropout(tiny_whisper_model, tmp_path / "still")
    cached = tunesuite.finetune(TASK, str(model), str(pitches), mode="frozen", output_dir=str(tmp_path / "c"), **RUN)
    assert "feature cache: backbone features of 16 examples computed once" in log.text, log.text
    normal = tunesuite.finetune(TASK, str(model), str(pitches), mode="frozen", output_dir=str(tmp_path / "n"),
                                cache_features="never", **RUN)
    assert cached["train_loss"] == pytest.approx(normal["train_loss"], rel=1e-4)
    assert cached["test_loss"] == pytest.approx(normal["test_loss"], rel=1e-4)
    clips = [pitch_clip(PITCHES[name], __import__("random").Random(3)) for name in PITCHES]
    first, second = tunesuite.load(tmp_path / "c"), tunesuite.load(tmp_path / "n")
    assert torch.allclose(first.logits(clips), second.logits(clips), atol=1e-5)


def test_clips_are_padded_to_the_encoder_window(tiny_whisper_model, pitches, tmp_path):  # noqa: F811
    """A 0.3 s clip and a 3 s one (longer than the tiny model's 1 s window) both become the window's 100 frames."""
    tunesuite.finetune(TASK, str(tiny_whisper_model), str(pitches), mode="frozen", output_dir=str(tmp_path / "r"),
                       **{**RUN, "max_steps": 1})
    predictor = tunesuite.load(tmp_path / "r")
    clips = [pitch_clip(300.0, __import__("random").Random(0), seconds) for seconds in (0.3, 3.0)]
    batch = predictor.task.data.make_batch(predictor.processor, clips, predictor.model.config)
    assert batch["input_features"].shape == (2, 8, 100)
    assert predictor.logits(clips).shape == (2, 3)


@pytest.mark.parametrize("mode", ["frozen", "lora"])
def test_what_trains_by_name(tiny_whisper_model, pitches, tmp_path, mode):  # noqa: F811
    model = model_after_mode(TASK, tiny_whisper_model, pitches, tmp_path, mode)
    trained = trainable_names(model)
    head = {f"{m}.{p}" for m in ("projector", "classifier") for p in ("weight", "bias")}
    if mode == "frozen":
        assert trained == head
    else:
        adapted = {f"base_model.model.encoder.layers.0.self_attn.{m}.lora_{ab}.default.weight"
                   for m in ("q_proj", "v_proj") for ab in "AB"}
        copies = {f"base_model.model.{n.replace('.', '.modules_to_save.default.', 1)}" for n in head}
        assert trained == adapted | copies
    assert not any("decoder" in n for n, _ in model.named_parameters())  # the classifier has no decoder


