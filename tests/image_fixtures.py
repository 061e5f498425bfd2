"""Image fixtures: tiny ViT / ResNet checkpoints built from configs, and generated PNG folders (no network)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

CLASSES = ("red", "green", "blue")  # the class is the dominant colour channel; stripes and noise on top
SIZE = 32


def make_image(rng: random.Random, label: str, size: int = SIZE) -> np.ndarray:
    """A separable RGB picture for `label`: one bright channel, random horizontal stripes, noise."""
    np_rng = np.random.default_rng(rng.randrange(2**32))
    pixels = np_rng.integers(0, 90, (size, size, 3))
    pixels[..., CLASSES.index(label)] += 140
    for row in np_rng.choice(size, size // 4, replace=False):
        pixels[row] = pixels[row] // 2
    return pixels.clip(0, 255).astype(np.uint8)


def write_image_folder(folder: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """folder/<split>/<class>/<i>.png, e.g. counts={"train": 8, "test": 4} images per class."""
    from PIL import Image

    rng = random.Random(seed)
    for split, n in counts.items():
        for label in CLASSES:
            (folder / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(make_image(rng, label)).save(folder / split / label / f"{i}.png")
    return folder


def _seed() -> None:
    import torch

    torch.manual_seed(int(os.environ.get("TUNESUITE_TEST_SEED", "0")))


SOURCE_LABELS = {"id2label": {i: f"source{i}" for i in range(4)}, "label2id": {f"source{i}": i for i in range(4)}}


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 ViT for 32x32 images with a 4-class head (a new label set replaces it)."""
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    _seed()
    path = tmp_path_factory.mktemp("tiny-vit")
    config = ViTConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, **SOURCE_LABELS)
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessorPil(size={"height": SIZE, "width": SIZE}).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_resnet(tmp_path_factory) -> Path:
    """A 2-stage ResNet (basic blocks, 16/32 channels) with a 4-class head and ResNet's usual processor."""
    from transformers import ResNetConfig, ResNetForImageClassification
    from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil

    _seed()
    path = tmp_path_factory.mktemp("tiny-resnet")
    config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
                          **SOURCE_LABELS)
    ResNetForImageClassification(config).save_pretrained(path)
    ConvNextImageProcessorPil(size={"shortest_edge": SIZE}, crop_pct=0.875).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def image_data(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images"), {"train": 16, "validation": 4, "test": 4})


@pytest.fixture(scope="session")
def image_models(tiny_vit, tiny_resnet) -> dict[str, Path]:
    return {"vit": tiny_vit, "resnet": tiny_resnet}
