"""Text classification (any AutoModelForSequenceClassification encoder): single-label, multi-label and regression."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from .. import data
from ..errors import TunesuiteError
from ..registry import DataSpec, ModelSpec, Prepared, ResultSpec, Task, register_task
from . import classification, mistakes, streams
from .classification import REGRESSION


@dataclass
class TextArgs:
    text_column: list[str] = field(
        default_factory=lambda: ["text"], metadata={"help": "Text column, or two columns for sentence pairs."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})


def load_processor(path: str, cfg: Any) -> Any:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **({"revision": cfg.model.revision} if cfg else {}))
    except (OSError, ValueError) as e:
        raise TunesuiteError(f"could not load a tokenizer from {path!r}: {str(e).splitlines()[0]}") from None
    if cfg is not None:  # saved with the checkpoint, so prediction truncates like training did
        tokenizer.model_max_length = cfg.task_args.max_seq_length
    return tokenizer


def preprocess(raw: Any, tokenizer: Any, cfg: Any) -> Prepared:
    columns, label = cfg.task_args.text_column, cfg.data.label_column
    if not 1 <= len(columns) <= 2:
        raise TunesuiteError("--text-column takes one column, or two for sentence pairs")
    splits = data.select_splits(raw, cfg.data, cfg.training.seed)
    for key, split in splits.items():
        data.require_columns(split, columns, key, "--text-column")
        data.require_columns(split, [label], key, "--label-column")
    problem = cfg.data.problem_type or data.infer_problem_type(splits["train"], label)
    names = None if problem == REGRESSION else data.label_names(splits, label, problem,
                                                                data.split_source(cfg.data, "train"))
    encode = classification.label_encoder(problem, names, data.is_class_label(splits["train"].features[label]))

    def tokenize(batch: dict[str, list], indices: list[int], key: str) -> dict[str, Any]:
        where = f"{key} split ({data.split_source(cfg.data, key)})"  # like image and speech rows: split, file
        texts = [batch[c] for c in columns]
        for column, values in zip(columns, texts, strict=True):
            for i, value in zip(indices, values, strict=True):
                if not isinstance(value, str):
                    raise TunesuiteError(f"{where}, row {i}, column {column!r}: expected text, got {value!r}; "
                                         "fill or drop empty rows")
        for i, value in zip(indices, batch[label], strict=True):
            if value is None:
                raise TunesuiteError(f"{where}, row {i}, column {label!r}: missing label; fill or drop the row")
        encoded = tokenizer(*texts, truncation=True, max_length=cfg.task_args.max_seq_length)
        encoded["labels"] = [encode(v) for v in batch[label]]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]  # for length-grouped batches
        return encoded

    ready = {key: split.map(tokenize, batched=True, with_indices=True, remove_columns=split.column_names,
                            fn_kwargs={"key": key}, desc=f"tokenizing {key}",
                            num_proc=cfg.data.preprocessing_num_workers) for key, split in splits.items()}
    model_kwargs = {"num_labels": 1, "problem_type": problem} if names is None else {
        **data.label_maps(names), "problem_type": problem}
    weights = classification.resolve_class_weights(cfg.data.class_weights, problem, names,
                                                 data.values(ready["train"], "labels"))
    return Prepared(tokenizer, ready["train"], ready.get("eval"), ready.get("test"), model_kwargs,
                    raw={k: v for k, v in splits.items() if k != "train"},
                    input_columns=columns, reference_column=label, label_names=names, problem_type=problem,
                    class_weights=weights)


def collator(tokenizer: Any) -> Any:
    return DataCollatorWithPadding(tokenizer)


def make_batch(tokenizer: Any, items: list, config: Any) -> dict[str, torch.Tensor]:
    """Strings, or (text, text_pair) tuples, -> padded model inputs."""
    pairs = [item if isinstance(item, (list, tuple)) else (item,) for item in items]
    columns = list(zip(*pairs, strict=True))
    return dict(tokenizer(*[list(c) for c in columns], padding=True, truncation=True, return_tensors="pt"))


TEXT_CLASSIFICATION = register_task(Task(
    name="text-classification",
    model=ModelSpec(
        auto_model=AutoModelForSequenceClassification,
        head_modules=("classifier",),  # families add theirs (BERT's pooler: core/families.py)
        peft_task_type="SEQ_CLS",
        cached_features=True,
    ),
    data=DataSpec(load_processor=load_processor, preprocess=preprocess, collator=collator, make_batch=make_batch,
                  args=TextArgs, input_kind="text", example=("", '"a sentence to classify"'), stream=streams.text),
    results=ResultSpec(main_metric="accuracy", greater_is_better=True, compute_metrics=classification.compute_metrics,
                       decode=classification.decode, write_reports=classification.write_reports,
                       mistakes=mistakes.classification,
                       metric_inputs=classification.metric_inputs),
    training_defaults={"per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
                       "train_sampling_strategy": "group_by_length"},
))
