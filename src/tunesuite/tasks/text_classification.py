"""Text classification (any AutoModelForSequenceClassification encoder): single-label, multi-label and regression."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from tunesuite import data
from tunesuite.errors import TunesuiteError
from tunesuite.models.pretrained import position_limit
from tunesuite.registry import DataSpec, ModelSpec, Prepared, ResultSpec, Task, register_task
from tunesuite.tasks import classification, mistakes, streamed_inputs
from tunesuite.tasks.classification import REGRESSION

log = logging.getLogger("tunesuite")
# Stand-ins for a missing pad token, in order of preference (padding is masked out, so any id the model knows does).
PAD_STAND_INS = ("eos_token", "unk_token", "sep_token", "cls_token")


@dataclass
class TextArgs:
    text_column: list[str] = field(
        default_factory=lambda: ["text"], metadata={"help": "Text column, or two columns for sentence pairs."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})


def load_processor(path: str, cfg: Any) -> Any:
    """The tokenizer of `path`, able to pad; for a run (cfg given) it truncates to the length the model takes."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **({"revision": cfg.model.revision} if cfg else {}))
    except (OSError, ValueError) as e:
        raise TunesuiteError(f"could not load a tokenizer from {path!r}: {str(e).splitlines()[0]}") from None
    ensure_pad_token(tokenizer, path)
    if cfg is not None:  # saved with the checkpoint, so prediction truncates like training did
        tokenizer.model_max_length = fit_length(cfg.task_args.max_seq_length, tokenizer, path, cfg)
    return tokenizer


def ensure_pad_token(tokenizer: Any, path: str) -> None:
    """Batches are padded: a tokenizer without a pad token (GPT-2 style) pads with a special token it has."""
    if tokenizer.pad_token is not None:
        return
    stand_in = next((name for name in PAD_STAND_INS if getattr(tokenizer, name, None) is not None), None)
    if stand_in is None:
        raise TunesuiteError(f"the tokenizer of {path} has no pad token, nor an eos, unk, sep or cls token to pad "
                             "with; add a pad token to it (tokenizer.add_special_tokens, then save_pretrained) or "
                             "choose another --model")
    tokenizer.pad_token = getattr(tokenizer, stand_in)
    log.info("the tokenizer of %s has no pad token: padding with its %s %r (id %d)", path,
             stand_in.removesuffix("_token"), tokenizer.pad_token, tokenizer.pad_token_id)


def fit_length(wanted: int, tokenizer: Any, path: str, cfg: Any) -> int:
    """--max-seq-length, clamped to the model's position limit (its config; else the tokenizer's own limit)."""
    from transformers import AutoConfig

    if wanted < 1:
        raise TunesuiteError(f"--max-seq-length {wanted}: must be at least 1 token (e.g. 128)")
    try:
        config = AutoConfig.from_pretrained(path, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir)
    except (OSError, ValueError):  # loading the model says what is wrong with it
        config = None
    found = position_limit(config, AutoModelForSequenceClassification, tokenizer.pad_token_id) if config else None
    # The tokenizer's own model_max_length only where the config sets none: a finished run's tokenizer holds its
    # training length there, which is no limit of the model. transformers marks "unset" with a huge number.
    if found is None and 0 < tokenizer.model_max_length < 1_000_000:
        found = tokenizer.model_max_length, f"the tokenizer's model_max_length {tokenizer.model_max_length}"
    if found is None or wanted <= found[0]:
        return wanted
    limit, source = found
    log.info("--max-seq-length %d is longer than the model takes (%s): truncating to %d tokens", wanted, source,
             limit)
    return limit


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
        encoded = tokenizer(*texts, truncation=True, max_length=tokenizer.model_max_length)  # fit_length's
        encoded["labels"] = [encode(v) for v in batch[label]]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]  # for length-grouped batches
        return encoded

    ready = {key: split.map(tokenize, batched=True, with_indices=True, remove_columns=split.column_names,
                            fn_kwargs={"key": key}, desc=f"tokenizing {key}",
                            num_proc=cfg.data.preprocessing_num_workers) for key, split in splits.items()}
    model_kwargs = {"num_labels": 1, "problem_type": problem} if names is None else {
        **data.label_maps(names), "problem_type": problem}
    model_kwargs["pad_token_id"] = tokenizer.pad_token_id  # the id batches pad with (GPT-2 finds the last token so)
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
        head_modules=("classifier",),  # families add theirs (BERT's pooler: models/families.py)
        peft_task_type="SEQ_CLS",
        cached_features=True,
    ),
    data=DataSpec(load_processor=load_processor, preprocess=preprocess, collator=collator, make_batch=make_batch,
                  args=TextArgs, input_kind="text", example=("", '"a sentence to classify"'),
                  stream=streamed_inputs.text),
    results=ResultSpec(main_metric="accuracy", greater_is_better=True, compute_metrics=classification.compute_metrics,
                       decode=classification.decode, write_reports=classification.write_reports,
                       mistakes=mistakes.classification,
                       metric_inputs=classification.metric_inputs),
    training_defaults={"per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
                       "train_sampling_strategy": "group_by_length"},
))
