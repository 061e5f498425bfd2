"""The partial feature cache: with only the top layers training (frozen --trainable-layers 1, LoRA on the top
layer), the frozen layers below are computed once; training on their cached output ends where the uncached run
ends: the same losses, metrics and weights, for text (two families), image and audio models.

Dropout is set to 0 in the checkpoints: the cache computes the frozen layers in eval mode, and with dropout in
them the uncached run would differ by its random masks (the cached run is then the deterministic one)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from family_fixtures import IMAGE, TEXT
from safetensors.torch import load_file

import tunesuite

COMMON = {"num_train_epochs": 2, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
          "save_strategy": "no", "disable_tqdm": True, "seed": 0, "logging_steps": 1, "warmup_steps": 0}
PER_TASK = {IMAGE: {"augment": False}, "audio-classification": {"augment": False}}
LEARNING_RATE = 1e-2


def without_dropout(model, folder):
    """A copy of the checkpoint with every dropout probability (and LayerDrop) in its config set to 0."""
    shutil.copytree(model, folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in config.items():
        if ("dropout" in key or "layerdrop" in key) and isinstance(value, float):
            config[key] = 0.0
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def agree(cached, normal, tmp_path):
    assert cached["train_loss"] == pytest.approx(normal["train_loss"], rel=1e-4)
    main = "accuracy"
    assert cached[f"test_{main}"] == normal[f"test_{main}"] and cached["eval_loss"] == pytest.approx(
        normal["eval_loss"], rel=1e-4)
    first, second = (load_file(tmp_path / run / name) for run, name in (
        ("cached", _weights(tmp_path / "cached")), ("normal", _weights(tmp_path / "normal"))))
    assert first.keys() == second.keys()
    for name in first:
        # 1e-4: the updates are ~1e-2; key biases get float-noise gradients that Adam scales up to ~lr steps
        assert torch.allclose(first[name], second[name], atol=1e-4, rtol=1e-3), name
    # the whole run in train_runtime (feature pass included), the training alone apart
    assert cached["train_runtime"] == pytest.approx(cached["train_cached_runtime"] + cached["feature_cache_seconds"],
                                                    abs=1e-3)


def _weights(out):
    return "model.safetensors" if (out / "model.safetensors").exists() else "adapter_model.safetensors"


@pytest.mark.parametrize("family", ["bert", "roberta", "vit"])
def test_frozen_top_layer_trains_on_cached_lower_layers(family, family_model, family_data, tmp_path, log):
    task = TEXT if family != "vit" else IMAGE
    model = without_dropout(family_model(family), tmp_path / "model")
    flags = {**COMMON, **PER_TASK.get(task, {}), "learning_rate": LEARNING_RATE, "mode": "frozen",
             "trainable_layers": 1}
    cached = tunesuite.finetune(task, str(model), str(family_data[task]), output_dir=str(tmp_path / "cached"),
                                **flags)
    assert "partial feature cache: the 1 frozen layers below layer 1 computed once" in log.text, log.text
    normal = tunesuite.finetune(task, str(model), str(family_data[task]), output_dir=str(tmp_path / "normal"),
                                **flags, cache_features="never")
    agree(cached, normal, tmp_path)


def test_audio_frozen_top_layer_on_cached_lower_layers(tiny_w2v, pitch_data, tmp_path, log):
    flags = {**COMMON, **PER_TASK["audio-classification"], "learning_rate": LEARNING_RATE, "mode": "frozen",
             "trainable_layers": 1}
    cached = tunesuite.finetune("audio-classification", str(tiny_w2v), str(pitch_data),
                                output_dir=str(tmp_path / "cached"), **flags)
    assert "partial feature cache: the 1 frozen layers below layer 1 computed once" in log.text, log.text
    normal = tunesuite.finetune("audio-classification", str(tiny_w2v), str(pitch_data),
                                output_dir=str(tmp_path / "normal"), **flags, cache_features="never")
    agree(cached, normal, tmp_path)


def test_lora_on_the_top_layer_only_trains_on_cached_lower_layers(family_model, family_data, tmp_path, log,
                                                                  monkeypatch):
    """LoRA adapting only layer 1's projections leaves layer 0 frozen: cached, it ends where the uncached run
    (the mode's cache blocked for the reference run) ends; adapting every layer, the normal path runs."""
    from tunesuite import registry

    model = without_dropout(family_model("bert"), tmp_path / "model")
    top = [f"bert.encoder.layer.1.attention.self.{m}" for m in ("query", "value")]
    flags = {**COMMON, "learning_rate": LEARNING_RATE, "mode": "lora", "lora_target_modules": top,
             "lora_dropout": 0.0, "lora_r": 2}
    cached = tunesuite.finetune(TEXT, str(model), str(family_data[TEXT]), output_dir=str(tmp_path / "cached"),
                                **flags)
    assert "partial feature cache: the 1 frozen layers below layer 1 computed once" in log.text, log.text
    log.clear()
    everywhere = tunesuite.finetune(TEXT, str(model), str(family_data[TEXT]), output_dir=str(tmp_path / "all"),
                                    **{**flags, "lora_target_modules": ["query", "value"]})
    assert "the lowest layer trains: nothing below it to cache" in log.text  # every layer adapted: normal path
    assert cached["trainable_params"] < everywhere["trainable_params"]
    lora = registry.modes()["lora"]
    monkeypatch.setitem(registry.MODES, "lora", dataclasses.replace(lora, feature_cache=lambda _args: "reference"))
    normal = tunesuite.finetune(TEXT, str(model), str(family_data[TEXT]), output_dir=str(tmp_path / "normal"),
                                **flags)
    agree(cached, normal, tmp_path)


@pytest.mark.parametrize("family", ["distilbert", "vit"])
def test_lora_layers_adapts_the_top_layers_and_caches_the_rest(family, family_model, family_data, tmp_path, log,
                                                              monkeypatch):
    """--lora-layers 1 puts LoRA in the top layer only, whatever the family calls its stack and projections
    (DistilBERT's transformer.layer / q_lin, ViT's encoder.layer / query): the layer below is cached, and the
    run ends where the uncached one ends."""
    from tunesuite import registry

    task = TEXT if family != "vit" else IMAGE
    model = without_dropout(family_model(family), tmp_path / "model")
    flags = {**COMMON, **PER_TASK.get(task, {}), "learning_rate": LEARNING_RATE, "mode": "lora", "lora_layers": 1,
             "lora_dropout": 0.0, "lora_r": 2}
    cached = tunesuite.finetune(task, str(model), str(family_data[task]), output_dir=str(tmp_path / "cached"),
                                **flags)
    assert "partial feature cache: the 1 frozen layers below layer 1 computed once" in log.text, log.text
    adapter = json.loads((tmp_path / "cached" / "adapter_config.json").read_text())
    assert adapter["target_modules"] and all(".1." in name for name in adapter["target_modules"]), adapter
    lora = registry.modes()["lora"]
    monkeypatch.setitem(registry.MODES, "lora", dataclasses.replace(lora, feature_cache=lambda _args: "reference"))
    normal = tunesuite.finetune(task, str(model), str(family_data[task]), output_dir=str(tmp_path / "normal"),
                                **flags)
    agree(cached, normal, tmp_path)


def test_lora_layers_out_of_range_names_the_layer_count(family_model, family_data, tmp_path):
    from tunesuite.errors import TunesuiteError

    with pytest.raises(TunesuiteError, match=r"--lora-layers 3: the model has 2 layers in .*; pass 1 to 2"):
        tunesuite.finetune(TEXT, str(family_model("bert")), str(family_data[TEXT]), output_dir=str(tmp_path / "o"),
                           **COMMON, mode="lora", lora_layers=3)
