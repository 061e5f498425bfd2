"""LoRA targets peft can adapt: grouped (depthwise) convolutions among the targets are skipped and named once,
the rest is adapted; a model whose targets are all such layers is refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

import tunesuite
from tunesuite.errors import TunesuiteError

QUICK = {"max_steps": 1, "per_device_train_batch_size": 4, "eval_strategy": "no", "save_strategy": "no",
         "do_predict": False, "disable_tqdm": True, "augment": False, "lora_r": 2}


@pytest.fixture(scope="module")
def tiny_mobilenet(tmp_path_factory) -> Path:
    """A MobileNetV2 (no family entry: LoRA falls back to its Conv2d layers, depthwise ones among them; TF-style
    padding, as the Hub's, reads each convolution's stride)."""
    import torch
    from image_fixtures import SIZE, SOURCE_LABELS
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-mobilenet")
    config = MobileNetV2Config(image_size=SIZE, depth_multiplier=0.25, min_depth=8, **SOURCE_LABELS)
    MobileNetV2ForImageClassification(config).save_pretrained(path)
    ViTImageProcessorPil(size={"height": SIZE, "width": SIZE}).save_pretrained(path)
    return path


def depthwise(path: Path) -> list[str]:
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(path)
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]


def test_fallback_targets_skip_depthwise_convolutions(tiny_mobilenet, image_data, tmp_path, log):
    grouped = depthwise(tiny_mobilenet)
    assert grouped  # the case this is about
    tunesuite.finetune("image-classification", str(tiny_mobilenet), str(image_data), mode="lora",
                       output_dir=str(tmp_path / "out"), **QUICK)
    assert (f"LoRA: skipped {len(grouped)} grouped (depthwise) convolutions peft cannot adapt: "
            f"{', '.join(grouped[:5])}, ... ({len(grouped)} in all)") in log.text
    adapter = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    targets = set(adapter["target_modules"]) - set(adapter["exclude_modules"])
    assert targets and not targets & set(grouped)  # the pointwise convolutions are adapted
    # the saved adapter opens again and predicts (peft's conv wrappers need the same geometry there)
    predictor = tunesuite.load(str(tmp_path / "out"))
    images = sorted((image_data / "test").rglob("*.png"))[:2]
    assert [set(row) >= {"label"} for row in predictor.predict([str(p) for p in images])] == [True, True]


def test_only_depthwise_targets_are_refused(tiny_mobilenet, image_data, tmp_path):
    grouped = depthwise(tiny_mobilenet)
    with pytest.raises(TunesuiteError, match=rf"mode lora: every targeted module \({len(grouped)}\) is a grouped "
                                             r"\(depthwise\) convolution, which peft cannot adapt"):
        tunesuite.finetune("image-classification", str(tiny_mobilenet), str(image_data), mode="lora",
                           output_dir=str(tmp_path / "out"), lora_target_modules=grouped, **QUICK)


def test_other_families_keep_their_targets(tiny_resnet, image_data, tmp_path, log):
    tunesuite.finetune("image-classification", str(tiny_resnet), str(image_data), mode="lora",
                       output_dir=str(tmp_path / "out"), **QUICK)
    adapter = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert adapter["target_modules"] == ["convolution"] and not adapter.get("exclude_modules")
    assert "LoRA: skipped" not in log.text
