"""TaskSpec: everything that differs between tasks, as plain values and functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset


@dataclass
class Prepared:
    """What a task's `preprocess` hands the trainer: model-ready splits plus what the model needs to know."""

    processor: Any  # tokenizer / image processor / Wav2Vec2Processor; saved with the checkpoint
    train: Dataset | None
    eval: Dataset | None
    test: Dataset | None
    model_kwargs: dict[str, Any]  # passed to from_pretrained (num_labels, id2label, vocab_size, ...)
    raw: dict[str, Dataset] = field(default_factory=dict)  # eval/test splits before preprocessing
    info: dict[str, Any] = field(default_factory=dict)  # task-specific facts (label names, problem type...)


@dataclass(frozen=True)
class TaskSpec:
    name: str  # "text-classification"; also the pipeline tag
    auto_model: Any  # an AutoModelFor... class
    head_modules: tuple[str, ...]  # module names that always train (the task head)
    lora_targets: dict[str, list[str]]  # model_type -> default LoRA target module names
    main_metric: str  # metric for best-model selection, without the eval_ prefix
    greater_is_better: bool
    load_processor: Callable[[str, Any], Any]  # (model path, RunConfig) -> processor
    preprocess: Callable[[Any, Any, Any], Prepared]  # (raw DatasetDict, processor, RunConfig) -> Prepared
    collator: Callable[[Any], Callable]  # processor -> data collator
    compute_metrics: Callable[[Prepared], Callable]  # Prepared -> fn(EvalPrediction) -> dict
    make_batch: Callable[[Any, list, Any], dict]  # (processor, raw inputs, model config) -> model inputs
    decode: Callable[[Any, Any, Any], list[dict]]  # (predictions, processor, model config) -> a dict per input
    write_reports: Callable[..., dict] | None = None  # (predictions, Prepared, out_dir, split) -> extra metrics
    preprocess_logits: Callable | None = None  # reduce logits before they pile up in evaluation
    prompt_module: Callable | None = None  # (model, RunConfig) -> model with learnable prompts; None: peft
    peft_task_type: str | None = None  # peft TaskType for text models (enables peft prompt methods)
    extra_args: type | None = None  # a dataclass of task-only flags
    training_defaults: dict[str, Any] = field(default_factory=dict)  # TrainingArguments defaults
    demo: Callable[[], Any] | None = None  # runs the offline demo when the script gets no arguments
    # frozen model -> (batch -> cached features, features -> logits), or None when the model is not supported
    feature_head: Callable[[Any], Any] | None = None
    input_kind: str = "file"  # what `tunesuite predict OUT ARGS` reads: "file" paths, or "text" lines of files
    # (model, RunConfig) -> model: task-specific set-up after the mode is applied; also called with cfg None on
    # a loaded run before prediction (e.g. keep a part frozen, register output hooks)
    setup_model: Callable[[Any, Any], Any] | None = None
    format_prediction: Callable[[dict], dict] | None = None  # predictions.jsonl record -> the line written
