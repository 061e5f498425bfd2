"""Offline image demo: real transfer learning without downloads.

No pretrained ViT or ResNet ships offline, so the demo makes its own: it pretrains a small ViT and a small
ResNet on a source task (scikit-learn's handwritten digits 0-4), saves them as ordinary checkpoints
(save_pretrained + image processor), then fine-tunes each on a target task (digits 5-9, 20 labelled images
per class) in all four modes, next to the same architecture trained from scratch on the same 100 images.

    python tasks/image_classification.py          # or: python -m tunesuite.demos.image --models vit
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from tunesuite.registry import register_demo

ROOT = Path("runs/image-demo")
SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
# Digits must not be flipped or cropped (a mirrored 2 is no 2): the demo trains without augmentation.
COMMON = {"per_device_train_batch_size": 16, "eval_strategy": "no", "save_strategy": "no", "disable_tqdm": True,
          "logging_strategy": "no", "seed": 0, "augment": False, "do_predict": True, "warmup_steps": 0.1}
SOURCE_TRAINING = {"learning_rate": 1e-3, "num_train_epochs": 30, "per_device_train_batch_size": 32}
# Learning rates per mode (tiny models, 100 images): adapters, prompts and a lone head need far larger steps
# than updating every weight. The from-scratch baseline gets full mode's settings.
TARGET_TRAINING = {
    "full": {"learning_rate": 2e-3, "num_train_epochs": 30},
    "frozen": {"learning_rate": 5e-2, "num_train_epochs": 30},
    "lora": {"learning_rate": 1e-2, "num_train_epochs": 30, "lora_r": 8, "lora_alpha": 16},
    "prompt": {"learning_rate": 5e-2, "num_train_epochs": 30, "num_virtual_tokens": 8, "prompt_pad": 4},
}


def build_initial(arch: str, path: Path) -> Path:
    """A randomly initialised small model + its image processor, saved like any checkpoint."""
    from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification
    from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    torch.manual_seed(0)
    if arch == "vit":  # 8x8 digits upscaled to 32x32, 4x4 patches: 64 tokens of width 64
        model = ViTForImageClassification(ViTConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=4,
                                                    num_attention_heads=4, intermediate_size=128))
        processor = ViTImageProcessorPil(size={"height": 32, "width": 32})
    else:
        model = ResNetForImageClassification(ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128],
                                                          depths=[1, 1, 1], layer_type="basic"))
        processor = ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=1.0)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _run(model: Path, data: Path, mode: str, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    import tunesuite

    start = time.perf_counter()
    result = tunesuite.finetune("image-classification", str(model), str(data), mode=mode, output_dir=str(out),
                                overwrite_output_dir=True, **{**COMMON, **settings})
    return {**result, "seconds": time.perf_counter() - start}


@register_demo("image-classification")
def main(models: tuple[str, ...] = ("vit", "resnet"), modes: tuple[str, ...] = tuple(TARGET_TRAINING),
         root: Path = ROOT) -> list[dict[str, Any]]:
    """Pretrain on digits 0-4, fine-tune on 20 images per digit 5-9 in each mode; print and return the table."""
    from tunesuite.demos.corpora import write_digits_imagefolder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # models this small run fastest on one thread (and leave the other cores alone)
    print("No arguments: running the offline image demo (pretrain on digits 0-4, transfer to digits 5-9).")
    source = write_digits_imagefolder(root / "data/source", SOURCE, {"validation": 20, "train": None})
    target = write_digits_imagefolder(root / "data/target", TARGET, {"train": 20, "validation": 20, "test": None})
    rows = []
    logging.disable(logging.WARNING)  # per-run logs and load reports would bury the table
    try:
        for arch in models:
            initial = build_initial(arch, root / f"{arch}-init")
            pretrained = _run(initial, source, "full", root / f"{arch}-source", SOURCE_TRAINING)
            print(f"{arch}: source task (digits 0-4) validation accuracy {pretrained['eval_accuracy']:.3f} "
                  f"in {pretrained['seconds']:.0f}s", flush=True)
            scratch = _run(initial, target, "full", root / f"{arch}-scratch", TARGET_TRAINING["full"])
            rows.append({"model": arch, "mode": "scratch", **_row(scratch)})
            for mode in modes:
                result = _run(root / f"{arch}-source", target, mode, root / f"{arch}-{mode}", TARGET_TRAINING[mode])
                rows.append({"model": arch, "mode": mode, **_row(result)})
                print(f"{arch} {mode}: target test accuracy {result['test_accuracy']:.3f}", flush=True)
    finally:
        torch.set_num_threads(threads)
        logging.disable(logging.NOTSET)
    print(format_table(rows))
    (root / "results.json").write_text(json.dumps(rows, indent=2))
    return rows


def _row(result: dict[str, Any]) -> dict[str, Any]:
    return {"trainable_percent": result["trainable_percent"], "test_accuracy": result["test_accuracy"],
            "test_macro_f1": result["test_macro_f1"], "seconds": result["seconds"]}


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["", "target: digits 5-9, 20 training images per class; scratch = same model, random init, full mode",
             f"{'model':<8}{'mode':<9}{'trainable %':>12}{'test acc':>10}{'macro-F1':>10}{'time s':>8}"]
    for r in rows:
        lines.append(f"{r['model']:<8}{r['mode']:<9}{r['trainable_percent']:>12.2f}{r['test_accuracy']:>10.3f}"
                     f"{r['test_macro_f1']:>10.3f}{r['seconds']:>8.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit", "resnet"], choices=["vit", "resnet"])
    parser.add_argument("--modes", nargs="+", default=list(TARGET_TRAINING), choices=list(TARGET_TRAINING))
    args = parser.parse_args()
    main(tuple(args.models), tuple(args.modes))
