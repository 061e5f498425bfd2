"""Image classification (any AutoModelForImageClassification): image folders, path,label manifests, Hub datasets."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoImageProcessor, AutoModelForImageClassification, DefaultDataCollator

from tunesuite import data
from tunesuite.data import image
from tunesuite.errors import TunesuiteError
from tunesuite.modes import own_prompts
from tunesuite.registry import DataSpec, ModelSpec, Prepared, ResultSpec, Task, register_task
from tunesuite.tasks import classification, image_data, mistakes, streamed_inputs
from tunesuite.tasks.classification import SINGLE

log = logging.getLogger("tunesuite")


@dataclass
class ImageArgs:
    image_column: str | None = field(
        default=None, metadata={"help": "Column of images or image paths (default: image, the only image column, "
                                        "or path)."})
    skip_bad_files: bool = field(
        default=False, metadata={"help": "Skip (and count) unreadable images instead of stopping."})
    augment: bool = field(default=True, metadata={"help": "Train-time random resized crop + horizontal flip."})


def load_processor(path: str, cfg: Any) -> Any:
    try:  # the PIL backend: no torchvision needed
        return AutoImageProcessor.from_pretrained(path, backend="pil",
                                                  **({"revision": cfg.model.revision} if cfg else {}))
    except (OSError, ValueError) as e:
        raise TunesuiteError(f"could not load an image processor from {path!r}: {str(e).splitlines()[0]} "
                             "(the model folder needs a preprocessor_config.json)") from None


def preprocess(raw: Any, processor: Any, cfg: Any) -> Prepared:
    label, args = cfg.data.label_column, cfg.task_args
    splits = data.select_splits(raw, cfg.data, cfg.training.seed)
    column = image_data.image_column(splits["train"], args.image_column)
    image_data.single_folder_class(splits["train"], column, label, data.split_source(cfg.data, "train"))
    for key, split in splits.items():
        data.require_columns(split, [column], key, "--image-column")
        data.require_columns(split, [label], key, "--label-column")
        for i, value in enumerate(data.values(split, label)):
            if value is None:
                raise TunesuiteError(f"{key} split, row {i}, column {label!r}: missing label; fill or drop the row")
    base = data.manifest_dir(cfg.data.dataset)
    # Only the two columns the task reads go on: other columns can neither break decoding nor reach the model.
    splits = {key: image_data.readable(split.select_columns(list(dict.fromkeys([column, label]))), column, base, key,
                                       args.skip_bad_files, cfg.data.preprocessing_num_workers)
              for key, split in splits.items()}
    problem = cfg.data.problem_type or data.infer_problem_type(splits["train"], label)
    if problem != SINGLE:
        raise TunesuiteError(f"image classification takes one class per image; column {label!r} looks like "
                             f"{problem.replace('_', ' ')} (set --label-column or --problem-type)")
    names = data.label_names(splits, label, problem, data.split_source(cfg.data, "train"))
    is_class_label = data.is_class_label(splits["train"].features[label])
    encode = classification.label_encoder(SINGLE, names, is_class_label)
    size = image.target_size(processor)

    def transform(key: str):
        train = key == "train"
        resize = {"do_resize": False, "do_center_crop": False} if train and args.augment else {}

        def apply(batch: dict[str, list]) -> dict[str, Any]:
            images = [image.open_image(ref, base, f"{key} split") for ref in batch["pixel_values"]]
            if resize:  # a fresh seed per batch from torch's RNG: reproducible, and distinct per dataloader worker
                rng = random.Random(int(torch.randint(0, 2**31 - 1, ()).item()))
                images = [image.augment(im, size, rng) for im in images]
            return {"pixel_values": processor(images, return_tensors="pt", **resize)["pixel_values"],
                    "labels": [encode(v) for v in batch["labels"]]}

        return apply

    ready: dict[str, Dataset] = {}
    for key, split in splits.items():
        names_for_model = {column: "pixel_values", label: "labels"}  # what the model's forward takes
        ready[key] = split.rename_columns({k: v for k, v in names_for_model.items() if k != v})
        ready[key].set_transform(transform(key))
    reports = {key: image_data.report_rows(split, column, label, base, names if is_class_label else None)
               for key, split in splits.items() if key != "train"}
    return Prepared(processor, ready["train"], ready.get("eval"), ready.get("test"),
                    {**data.label_maps(names), "problem_type": SINGLE}, raw=reports,
                    input_columns=["image"], reference_column=label, label_names=names, problem_type=SINGLE,
                    augmented=args.augment, class_weights=classification.resolve_class_weights(
                        cfg.data.class_weights, SINGLE, names,
                        [encode(v) for v in data.values(splits["train"], label)]))


def make_batch(processor: Any, items: list, config: Any) -> dict[str, torch.Tensor]:
    """Image paths, PIL images or arrays -> pixel_values (converted to RGB like training did)."""
    images = [image.open_image(item, None, f"input {i}") for i, item in enumerate(items)]
    return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"]}


def prompt_module(model: torch.nn.Module, args: Any, model_path: str) -> torch.nn.Module:
    """Vision prompts (modes/own_prompts.py): the family's (ViT-like: tokens), else a learnable pixel border."""
    height, width = image.target_size(load_processor(model_path, None))
    return own_prompts.attach(model, {"num_virtual_tokens": args.num_virtual_tokens, "depth": args.prompt_depth,
                                  "pad": args.prompt_pad, "image_size": [height, width]}, "image")


IMAGE_CLASSIFICATION = register_task(Task(
    name="image-classification",
    model=ModelSpec(
        auto_model=AutoModelForImageClassification,
        head_modules=("classifier",),
        prompt_module=prompt_module,
        cached_features=True,  # with --no-augment
    ),
    data=DataSpec(load_processor=load_processor, preprocess=preprocess,
                  collator=lambda processor: DefaultDataCollator(), make_batch=make_batch, args=ImageArgs,
                  example=("from PIL import Image", 'Image.new("RGB", (224, 224))'), stream=streamed_inputs.images),
    results=ResultSpec(main_metric="accuracy", greater_is_better=True, compute_metrics=classification.compute_metrics,
                       decode=classification.decode, write_reports=classification.write_reports,
                       mistakes=mistakes.with_media(mistakes.classification, "image",
                                                    mistakes.image_thumbnail("pixel_values")),
                       metric_inputs=classification.metric_inputs),
    training_defaults={"per_device_train_batch_size": 32, "per_device_eval_batch_size": 64},
))
