"""The registries: every task, mode and model family the suite knows, as objects. A leaf: imports nothing of ours.

CLI choices, `--help`, default learning rates and the README's tables are read from here; nothing else keeps a
list of task or mode names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModeContext:
    """What a mode's `apply` gets besides the model."""

    task: Task
    head: list[str]  # module names that always train: the task head plus modules the checkpoint lacked
    args: Any  # the mode's own arguments dataclass (None when it has none)
    model_path: str  # the base checkpoint (prompt initialisation reads its tokenizer)
    world_size: int  # processes in the run
    continued: bool = False  # the model carries this mode's trained adapter or prompts (a finished run): keep them


@dataclass(frozen=True)
class Mode:
    """A fine-tuning mode: turns a freshly loaded model into the model to train."""

    name: str
    apply: Callable[[Any, ModeContext], Any]  # (model, ctx) -> model, with requires_grad set
    help: str  # one line: what trains
    learning_rate: float  # the default when the user sets none
    args: type | None = None  # a dataclass of this mode's flags (with help text)
    frozen_inputs: bool = True  # the first layer's inputs carry no grad: needs non-reentrant checkpointing
    mergeable: bool = False  # `tunesuite export` can merge it into a plain transformers checkpoint
    # (mode args) -> None when the frozen-feature cache may serve this run, else the reason it may not
    feature_cache: Callable[[Any], str | None] | None = None
    callbacks: Callable[[Any], list] | None = None  # (mode args) -> extra TrainerCallbacks
    # (Family) -> what the mode does on that family, "ok (...)" or "refused: why" (the README's family table)
    on_family: Callable[[Any], str] | None = None


@dataclass
class Prepared:
    """What a task's `preprocess` hands the trainer: model-ready splits plus what the model needs to know."""

    processor: Any  # tokenizer / image processor / Wav2Vec2Processor; saved with the checkpoint
    train: Any  # datasets.Dataset, or None when only evaluating
    eval: Any
    test: Any
    model_kwargs: dict[str, Any]  # passed to from_pretrained (num_labels, id2label, vocab_size, ...)
    raw: dict[str, Any] = field(default_factory=dict)  # eval/test rows as the user gave them (for predictions)
    input_columns: list[str] = field(default_factory=list)  # raw columns copied into predictions.jsonl
    reference_column: str | None = None  # raw column holding the reference answer
    label_names: list[str] | None = None  # classification: class names in id order
    problem_type: str | None = None  # single_label_classification / multi_label_classification / regression
    augmented: bool = False  # training inputs change every epoch (no feature cache)
    class_weights: list[float] | None = None  # classification: per-class loss weights (--class-weights)


@dataclass(frozen=True)
class ModelSpec:
    """What the modes need to know about the task's models."""

    auto_model: Any  # an AutoModelFor... class
    head_modules: tuple[str, ...]  # module names that always train (a family may add its own)
    peft_task_type: str | None = None  # peft TaskType (enables peft prompt methods)
    prompt_module: Callable[[Any, Any, str], Any] | None = None  # (model, prompt args, model path) -> prompted
    cached_features: bool = False  # frozen runs may train the head on cached inputs of the head (feature_cache.py)
    # model -> (batch -> features, features -> logits), or None: an exact split where the head does not chain
    feature_split: Callable[[Any], Any] | None = None
    after_mode: Callable[[Any, Any], Any] | None = None  # (model, task args) -> model, set up for training
    on_load: Callable[[Any], Any] | None = None  # model -> model: a finished run's set-up before predicting


@dataclass(frozen=True)
class DataSpec:
    """Raw data in, model inputs out."""

    load_processor: Callable[[str, Any], Any]  # (model path, RunConfig or None for a finished run) -> processor
    preprocess: Callable[[Any, Any, Any], Prepared]  # (raw DatasetDict, processor, RunConfig) -> Prepared
    collator: Callable[[Any], Callable]  # processor -> data collator
    make_batch: Callable[[Any, list, Any], dict]  # (processor, raw inputs, model config) -> model inputs
    args: type | None = None  # a dataclass of the task's own flags
    input_kind: str = "file"  # what `tunesuite predict OUT ARGS` reads: file paths, or "text" lines of files
    # one raw input as Python code, (import line, expression): the model card's loading snippets predict on it
    example: tuple[str, str] = ("", '"an example"')
    # --streaming: (train IterableDataset, Prepared of the bounded rows, RunConfig, raw train rows) -> the stream
    # mapped to model inputs on the fly (data/streaming.py); None: the task cannot stream
    stream: Callable[[Any, Prepared, Any, Any], Any] | None = None


@dataclass(frozen=True)
class ResultSpec:
    """Model outputs -> metrics, reports and predictions."""

    main_metric: str  # for best-model selection, without the eval_ prefix
    greater_is_better: bool
    compute_metrics: Callable[[Prepared], Callable]  # Prepared -> fn(EvalPrediction) -> dict
    decode: Callable[[Any, Any, Any], list[dict]]  # (outputs, processor, model config) -> a dict per input
    preprocess_logits: Callable | None = None  # reduce logits per batch before they pile up in evaluation
    write_reports: Callable[..., str | None] | None = None  # (output, Prepared, out_dir, split) -> printed table
    format_prediction: Callable[[dict], dict] | None = None  # predictions.jsonl record -> the line written
    # (output, Prepared, split) -> the split's worst mistakes, worst first (OUT/{split}_mistakes.jsonl, report.html)
    mistakes: Callable[..., list[dict] | None] | None = None
    # Prepared -> fn(EvalPrediction) -> (predictions, references) as `--metric` (evaluate) metrics take them
    metric_inputs: Callable[[Prepared], Callable] | None = None


@dataclass(frozen=True)
class Task:
    """A task: its name (the pipeline tag), and what differs from other tasks, grouped by what it serves."""

    name: str
    model: ModelSpec
    data: DataSpec
    results: ResultSpec
    training_defaults: dict[str, Any] = field(default_factory=dict)  # TrainingArguments defaults of the task
    aliases: tuple[str, ...] = ()  # other names: finetune(task="asr"), `task: asr` in YAML


@dataclass(frozen=True)
class Family:
    """What the modes need to know about one model type; an empty field means "find it from the module tree"."""

    model_type: str  # config.model_type
    modality: str = ""  # "text", "image" or "speech": which fallbacks apply
    lora_targets: tuple[str, ...] = ()  # leaf module names LoRA adapts (the attention projections)
    prompt: str | None = None  # the prompt kind for non-peft prompts: "tokens", "pixels", "frames" (own_prompts)
    token_dim: str | None = None  # config attribute of the width of the input embeddings (peft prompts)
    layer_stack: str | None = None  # dotted name of the backbone's ModuleList of layers / stages
    head: tuple[str, ...] = ()  # modules that train with the task's head (e.g. a pooler feeding only it)


TASKS: dict[str, Task] = {}  # name or alias -> Task, filled as task modules are imported
MODES: dict[str, Mode] = {}  # name -> Mode, filled as mode modules are imported
# The built-in tasks, by every name they answer to -> the module that registers them. Imported on first use,
# so `--help` and `--version` need no torch; a plugin task registers itself with register_task.
BUILTIN_TASKS = {"text-classification": "tunesuite.tasks.text_classification",
                 "image-classification": "tunesuite.tasks.image_classification",
                 "automatic-speech-recognition": "tunesuite.tasks.asr", "asr": "tunesuite.tasks.asr",
                 "audio-classification": "tunesuite.tasks.audio_classification"}
BUILTIN_MODES = "tunesuite.modes"  # registers full, frozen, lora, prompt, bitfit
FAMILIES: dict[str, Family] = {}  # model_type -> Family, filled when the built-in entries are first asked for
BUILTIN_FAMILIES = "tunesuite.models.families"  # registers the built-in families
DEMOS: dict[str, Callable[[], Any]] = {}  # task name -> its offline demo (what a task script runs without arguments)
BUILTIN_DEMOS = "tunesuite.demos"  # registers the built-in tasks' demos


def register_task(task: Task) -> Task:
    for name in (task.name, *task.aliases):
        TASKS[name] = task
    return task


def register_mode(name: str, *, help: str, learning_rate: float, **options: Any) -> Callable:
    """Decorator: `@register_mode("bitfit", help=..., learning_rate=1e-3)` over `apply(model, ctx) -> model`."""

    def add(apply: Callable) -> Callable:
        MODES[name] = Mode(name, apply, help, learning_rate, **options)
        return apply

    return add


def register_family(family: Family) -> Family:
    FAMILIES[family.model_type] = family
    return family


def families() -> dict[str, Family]:
    """Every registered family, the built-in ones imported first."""
    importlib.import_module(BUILTIN_FAMILIES)
    return FAMILIES


def find_family(model_type: str) -> Family:
    """The family of `model_type`, or an empty entry (every fact then comes from the module tree)."""
    return families().get(model_type) or Family(model_type)


def register_demo(task_name: str) -> Callable:
    """Decorator: `@register_demo("text-classification")` over a function that runs the offline demo."""

    def add(run: Callable[[], Any]) -> Callable[[], Any]:
        DEMOS[task_name] = run
        return run

    return add


def find_demo(task_name: str) -> Callable[[], Any] | None:
    if task_name not in DEMOS:
        importlib.import_module(BUILTIN_DEMOS)
    return DEMOS.get(task_name)


def task_names() -> list[str]:
    """Every task name and alias, registered or built in (imports nothing)."""
    return sorted({*TASKS, *BUILTIN_TASKS})


def find_task(name: str) -> Task | None:
    """The task registered as `name` (dashes or underscores), importing a built-in one on first use."""
    key = name.replace("_", "-")
    if key not in TASKS and key in BUILTIN_TASKS:
        importlib.import_module(BUILTIN_TASKS[key])
    return TASKS.get(key)


def modes() -> dict[str, Mode]:
    """Every registered mode, the built-in ones imported first."""
    importlib.import_module(BUILTIN_MODES)
    return MODES
