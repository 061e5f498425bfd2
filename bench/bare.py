"""The plain baseline: the same model, data and TrainingArguments through a bare transformers.Trainer.

No tunesuite code here: what a user would write with transformers, datasets and peft alone. Modes: full
(everything trains), frozen (requires_grad on the head only), lora and text prompt tuning (peft directly),
with the suite's defaults (LoRA r 8, alpha 16, dropout 0.1; 20 virtual tokens) so both train the same set.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from datasets import Dataset, load_dataset
from PIL import Image, ImageOps
from transformers import (
    AutoImageProcessor,
    AutoModelForCTC,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoProcessor,
    AutoTokenizer,
    DataCollatorWithPadding,
    DefaultDataCollator,
    Trainer,
    TrainingArguments,
)

HEADS = ("classifier", "bert.pooler", "lm_head")  # the task heads; those a model has always train
LORA_TARGETS = {"bert": ["query", "value"], "vit": ["q_proj", "v_proj"], "resnet": ["convolution"],
                "wav2vec2": ["q_proj", "v_proj"]}


def apply_mode(model: torch.nn.Module, mode: str, task_type: str | None = None) -> torch.nn.Module:
    modules = {name for name, _ in model.named_modules()}
    head = [h for h in HEADS if h in modules]
    if mode == "full":
        return model
    if mode == "frozen":
        for name, param in model.named_parameters():
            param.requires_grad = any(name.startswith(h + ".") for h in head)
        return model
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    if mode == "lora":
        config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=LORA_TARGETS[model.config.model_type],
                            modules_to_save=head, task_type=task_type)
    elif mode == "prompt" and task_type == "SEQ_CLS":
        config = PromptTuningConfig(task_type=task_type, num_virtual_tokens=20, modules_to_save=head)
    else:
        raise ValueError(f"no bare equivalent of mode {mode}")
    return get_peft_model(model, config)


def label_maps(names: list[str]) -> dict[str, Any]:
    return {"num_labels": len(names), "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)}}


def text(model_dir: Path, data_dir: Path, mode: str, args: TrainingArguments, max_length: int = 128) -> Trainer:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train = load_dataset("csv", data_files={"train": str(data_dir / "train.csv")})["train"]
    names = sorted(set(train["label"]))
    index = {n: i for i, n in enumerate(names)}

    def tokenize(batch: dict[str, list]) -> dict[str, Any]:
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        return {**encoded, "labels": [index[v] for v in batch["label"]]}

    train = train.map(tokenize, batched=True, remove_columns=train.column_names)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, **label_maps(names),
                                                               problem_type="single_label_classification")
    return Trainer(model=apply_mode(model, mode, "SEQ_CLS"), args=args, train_dataset=train,
                   data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)


def _crop_and_flip(image: Image.Image, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Random resized crop (50-100% of the area, aspect 3/4-4/3) and a horizontal flip, with PIL."""
    width, height = image.size
    for _ in range(10):
        area, aspect = width * height * rng.uniform(0.5, 1.0), np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w, h = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            image = image.resize(size[::-1], Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
            break
    else:
        image = image.resize(size[::-1], Image.Resampling.BILINEAR)
    return ImageOps.mirror(image) if rng.random() < 0.5 else image


def image(model_dir: Path, data_dir: Path, mode: str, args: TrainingArguments) -> Trainer:
    processor = AutoImageProcessor.from_pretrained(model_dir, backend="pil")
    train = load_dataset("imagefolder", data_dir=str(data_dir), split="train")
    names = train.features["label"].names
    size = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
    size = (size.get("height") or size["shortest_edge"], size.get("width") or size["shortest_edge"])

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        rng = random.Random(int(torch.randint(0, 2**31 - 1, ()).item()))
        images = [_crop_and_flip(im.convert("RGB"), size, rng) for im in batch["image"]]
        pixels = processor(images, do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": batch["label"]}

    train.set_transform(transform)
    model = AutoModelForImageClassification.from_pretrained(model_dir, **label_maps(names),
                                                            ignore_mismatched_sizes=True)
    args.remove_unused_columns = False  # the transform needs the raw columns (as in transformers' examples)
    return Trainer(model=apply_mode(model, mode), args=args, train_dataset=train, data_collator=DefaultDataCollator(),
                   processing_class=processor)


def asr(model_dir: Path, data_dir: Path, mode: str, args: TrainingArguments) -> Trainer:
    processor = AutoProcessor.from_pretrained(model_dir)
    extractor, tokenizer = processor.feature_extractor, processor.tokenizer
    with (data_dir / "train.csv").open() as f:
        rows = list(csv.DictReader(f))

    def example(row: dict[str, str]) -> dict[str, Any]:
        samples, _ = sf.read(data_dir / row["path"], dtype="float32")
        values = extractor(samples, sampling_rate=extractor.sampling_rate).input_values[0]
        return {"input_values": values, "labels": tokenizer(row["text"].lower()).input_ids, "length": len(values)}

    train = Dataset.from_list([example(r) for r in rows]).with_format("numpy")

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = extractor.pad([{"input_values": f["input_values"]} for f in features], padding=True,
                              return_tensors="pt")
        labels = tokenizer.pad([{"input_ids": f["labels"]} for f in features], padding=True, return_tensors="pt")
        batch["labels"] = labels["input_ids"].masked_fill(labels["attention_mask"].ne(1), -100)
        return dict(batch)

    model = AutoModelForCTC.from_pretrained(model_dir, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                            ctc_loss_reduction="mean", ctc_zero_infinity=True)
    model.freeze_feature_encoder()
    return Trainer(model=apply_mode(model, mode), args=args, train_dataset=train, data_collator=collate,
                   processing_class=processor)


BUILDERS = {"text-classification": text, "image-classification": image, "asr": asr}


def build(task: str, model_dir: Path, data_dir: Path, mode: str, args: TrainingArguments) -> Trainer:
    return BUILDERS[task](model_dir, data_dir, mode, args)
