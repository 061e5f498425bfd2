"""Text classification (BERT family): single-label, multi-label and regression."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from .. import data
from ..errors import TunesuiteError
from ..registry import DataSpec, ModelSpec, Prepared, ResultSpec, Task, register_task
from . import metrics

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"


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


def _label_encoder(problem: str, names: list[str] | None, is_class_label: bool):
    index = {n: i for i, n in enumerate(names or [])}

    def encode(value: Any) -> Any:
        if problem == REGRESSION:
            return float(value)
        if problem == MULTI:
            hot = [0.0] * len(index)
            for v in value:
                hot[int(v) if is_class_label else index[str(v)]] = 1.0
            return hot
        return int(value) if is_class_label else index[str(value)]

    return encode


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
    feature = getattr(splits["train"].features[label], "feature", splits["train"].features[label])
    encode = _label_encoder(problem, names, type(feature).__name__ == "ClassLabel")

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
                            fn_kwargs={"key": key}, desc=f"tokenizing {key}") for key, split in splits.items()}
    model_kwargs = {"num_labels": 1, "problem_type": problem} if names is None else {
        **data.label_maps(names), "problem_type": problem}
    return Prepared(tokenizer, ready["train"], ready.get("eval"), ready.get("test"), model_kwargs,
                    raw={k: v for k, v in splits.items() if k != "train"},
                    input_columns=columns, reference_column=label, label_names=names, problem_type=problem)


def collator(tokenizer: Any) -> Any:
    return DataCollatorWithPadding(tokenizer)


def compute_metrics(prepared: Prepared):
    problem, names = prepared.problem_type, prepared.label_names

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if problem == REGRESSION:
            return metrics.regression(labels.reshape(-1), logits.reshape(-1))
        if problem == MULTI:
            return metrics.multi_label(labels.astype(int), (logits > 0).astype(int))
        return metrics.single_label(labels, logits.argmax(-1), len(names))

    return compute


def write_reports(output: Any, prepared: Prepared, out_dir: Path, split: str) -> str | None:
    if prepared.problem_type != SINGLE:
        return None
    return metrics.write_classification_reports(output.label_ids, output.predictions.argmax(-1),
                                                prepared.label_names, out_dir, split)


def make_batch(tokenizer: Any, items: list, config: Any) -> dict[str, torch.Tensor]:
    """Strings, or (text, text_pair) tuples, -> padded model inputs."""
    pairs = [item if isinstance(item, (list, tuple)) else (item,) for item in items]
    columns = list(zip(*pairs, strict=True))
    return dict(tokenizer(*[list(c) for c in columns], padding=True, truncation=True, return_tensors="pt"))


def decode(logits: Any, tokenizer: Any, config: Any) -> list[dict[str, Any]]:
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
    if config.problem_type == REGRESSION:
        return [{"score": float(v)} for v in logits.reshape(-1)]
    if config.problem_type == MULTI:
        probs = logits.sigmoid()
        return [{"labels": [config.id2label[i] for i, p in enumerate(row) if p > 0.5],
                 "scores": {config.id2label[i]: round(float(p), 6) for i, p in enumerate(row)}} for row in probs]
    probs = logits.softmax(-1)
    score, index = probs.max(-1)
    return [{"label": config.id2label[int(i)], "score": round(float(s), 6)} for s, i in zip(score, index, strict=True)]


def feature_head(model: Any):
    """BERT-family classifiers: cache the encoder's first-token state; the pooler + classifier train on it."""
    backbone = model.base_model
    pooler, dropout = getattr(backbone, "pooler", None), getattr(model, "dropout", None)
    if pooler is None or dropout is None or not isinstance(getattr(model, "classifier", None), torch.nn.Linear):
        return None

    def extract(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return backbone(**batch).last_hidden_state[:, :1]  # the pooler reads only the first token

    def head(features: torch.Tensor) -> torch.Tensor:
        return model.classifier(dropout(pooler(features)))

    return extract, head


TEXT_CLASSIFICATION = register_task(Task(
    name="text-classification",
    model=ModelSpec(
        auto_model=AutoModelForSequenceClassification,
        # BERT's pooler feeds only the classifier, so it is trained with it; models without one skip the name.
        head_modules=("classifier", "bert.pooler"),
        lora_targets={"bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
                      "electra": ["query", "value"], "distilbert": ["q_lin", "v_lin"],
                      "deberta-v2": ["query_proj", "value_proj"], "modernbert": ["Wqkv"]},
        peft_task_type="SEQ_CLS",
        feature_head=feature_head,
    ),
    data=DataSpec(load_processor=load_processor, preprocess=preprocess, collator=collator, make_batch=make_batch,
                  args=TextArgs, input_kind="text"),
    results=ResultSpec(main_metric="accuracy", greater_is_better=True, compute_metrics=compute_metrics,
                       decode=decode, write_reports=write_reports),
    training_defaults={"per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
                       "train_sampling_strategy": "group_by_length"},
))
