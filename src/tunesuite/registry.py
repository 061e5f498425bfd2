"""The registries: every task, mode and model family the suite knows, as objects. A leaf: imports nothing of ours.

CLI choices, `--help`, the default mode, each mode's learning rate, compare's candidates, `--mode auto`'s rules and
the README's tables are read from here; nothing else keeps a list of task or mode names. A name registered twice
is an error (`replace=True` replaces on purpose).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_MODE = "full"  # what trains when nobody says: finetune(), --mode, a run_config.yaml without a mode
SMALL_MODEL = 10_000_000  # parameters: below this a model is small (every weight trains cheaply, at higher rates)

# Types that live above the registry (it imports nothing of ours, nor torch): named here for the signatures below.
Model = Any  # a transformers PreTrainedModel (or a peft wrapper of one)
Processor = Any  # tokenizer / image processor / Wav2Vec2Processor
ModelConfig = Any  # the model's transformers PretrainedConfig
RunConfig = Any  # tunesuite.config.fields.RunConfig
Output = Any  # transformers PredictionOutput of one split


@dataclass(frozen=True)
class ModeContext:
    """What a mode's `apply` gets besides the model."""

    task: Task
    head: list[str]  # module names that always train: the task head plus modules the checkpoint lacked
    args: Any  # the mode's own arguments dataclass (None when it has none)
    model_path: str  # the base checkpoint (prompt initialisation reads its tokenizer)
    world_size: int  # processes in the run
    continued: bool = False  # the model carries this mode's trained adapter or prompts (a finished run): keep them


class RunFacts(Protocol):
    """What `--mode auto` knows of a run before building it (choose/auto.py's Facts)."""

    examples: int  # training rows
    classes: int | None  # None: not a classification task
    params: int  # the model's parameters


@dataclass(frozen=True)
class AutoRule:
    """When `--mode auto` picks a mode or recipe: the rules are tried by `order`, the first whose test holds wins."""

    order: int
    test: Callable[[RunFacts], bool]
    why: str  # the reason, as the auto log line gives it


@dataclass(frozen=True)
class Mode:
    """A fine-tuning mode: turns a freshly loaded model into the model to train."""

    name: str
    apply: Callable[[Model, ModeContext], Model]  # (model, ctx) -> model, with requires_grad set
    help: str  # one line: what trains
    learning_rate: float  # the default when the user sets none, on a model of SMALL_MODEL parameters or more
    small_model_learning_rate: float | None = None  # the default on a smaller model (None: learning_rate)
    args: type | None = None  # a dataclass of this mode's flags (with help text)
    frozen_inputs: bool = True  # the first layer's inputs carry no grad: needs non-reentrant checkpointing
    mergeable: bool = False  # `tunesuite export` can merge it into a plain transformers checkpoint
    # (mode args) -> None when the frozen-feature cache may serve this run, else the reason it may not
    # (cache_decided_by_model where no flag of the mode matters); None: the mode never takes the cache
    feature_cache: Callable[[Any], str | None] | None = None
    callbacks: Callable[[Any], list] | None = None  # (mode args) -> extra TrainerCallbacks
    # (Family) -> what the mode does on that family, "ok (...)" or "refused: why" (the README's family table)
    on_family: Callable[[Family], str] | None = None
    compared: bool = True  # one of `tunesuite compare`'s default candidates
    auto: AutoRule | None = None  # when `--mode auto` picks it
    # (Family) -> why bf16 would cost accuracy on that family (--precision auto keeps fp32), None: parity holds
    bf16_loss: Callable[[Family], str | None] | None = None
    # (model, prepared, mode args, seed) -> metrics: a mode that updates no weight (zero-shot, few-shot) sets up its
    # scorer here instead of training; the run takes no optimizer step. None: the mode trains
    trains_nothing: Callable[[Model, Prepared, Any, int], dict[str, Any]] | None = None
    # (model, prepared, mode args, seed) -> metrics: a mode that updates the weights its own way, through the library
    # made for it (setfit), instead of the Trainer; the weights change. None: the Trainer trains (or trains_nothing)
    fits: Callable[[Model, Prepared, Any, int], dict[str, Any]] | None = None

    def learning_rate_for(self, params: int | None) -> float:
        """The default learning rate on a model of `params` parameters (None: not known, the larger models' rate).
        `--mode X`, `compare` and `--mode auto` all ask this: a comparison's winner is what `--mode X` reruns."""
        small = params is not None and params < SMALL_MODEL and self.small_model_learning_rate is not None
        return self.small_model_learning_rate if small else self.learning_rate  # type: ignore[return-value]


@dataclass(frozen=True)
class Recipe:
    """A named way to run a mode with flags of its own (`frozen-then-full`): a compare candidate, an auto choice."""

    name: str
    mode: str  # the mode it runs
    help: str
    # (epochs, parameters) -> the mode's flags for a run of that many epochs on a model of that size
    flags: Callable[[int, int], dict[str, Any]]
    compared: bool = True  # one of `tunesuite compare`'s default candidates
    auto: AutoRule | None = None  # when `--mode auto` picks it


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


# What a task's callables take and give. Parameters are positional-only: each task names its own.


class PromptModule(Protocol):
    def __call__(self, model: Model, prompt_args: Any, model_path: str, /) -> Model:
        """The model with our own prompt module attached (vision, speech: peft has none for them)."""


class FeatureSplit(Protocol):
    def __call__(self, model: Model, /) -> tuple[Callable[[dict], Any], Callable[[Any], Any]] | None:
        """(batch -> features, features -> logits) for the frozen-feature cache, or None: the head does not
        chain exactly."""


class AfterMode(Protocol):
    def __call__(self, model: Model, task_args: Any, /) -> Model:
        """The model set up for training once the mode has set what trains."""


class OnLoad(Protocol):
    def __call__(self, model: Model, /) -> Model:
        """A finished run's model set up before predicting."""


class LoadProcessor(Protocol):
    def __call__(self, model_path: str, cfg: RunConfig | None, /) -> Processor:
        """The processor of `model_path`. `cfg` is the run being configured, or None when opening a finished run:
        then the processor saved with it is read as it is (no run flags apply)."""


class Preprocess(Protocol):
    def __call__(self, raw: Any, processor: Processor, cfg: RunConfig, /) -> Prepared:
        """A raw datasets.DatasetDict -> model-ready splits."""


class MakeCollator(Protocol):
    def __call__(self, processor: Processor, /) -> Callable[[list[dict]], dict]:
        """The data collator that batches preprocessed rows."""


class MakeBatch(Protocol):
    def __call__(self, processor: Processor, inputs: list, model_config: ModelConfig, /) -> dict[str, Any]:
        """Raw inputs (paths, texts, arrays) -> one batch of model inputs."""


class Stream(Protocol):
    def __call__(self, train: Any, prepared: Prepared, cfg: RunConfig, raw_train: Any, /) -> Any:
        """--streaming: the train IterableDataset mapped to model inputs on the fly (data/streaming.py)."""


class ComputeMetrics(Protocol):
    def __call__(self, prepared: Prepared, /) -> Callable[[Any], dict[str, float]]:
        """fn(EvalPrediction) -> metrics."""


class Decode(Protocol):
    def __call__(self, outputs: Any, processor: Processor, model_config: ModelConfig, /) -> list[dict]:
        """Model outputs -> one prediction dict per input."""


class PreprocessLogits(Protocol):
    def __call__(self, logits: Any, labels: Any, /) -> Any:
        """Logits reduced per batch before they pile up in evaluation (Trainer's preprocess_logits_for_metrics)."""


class WriteReports(Protocol):
    def __call__(self, output: Output, prepared: Prepared, out_dir: Any, split: str, /) -> str | None:
        """The split's report files in out_dir; returns the table to print, if any."""


class FormatPrediction(Protocol):
    def __call__(self, record: dict, /) -> dict:
        """A predictions.jsonl record -> the line written."""


class Mistakes(Protocol):
    def __call__(self, output: Output, prepared: Prepared, split: str, /) -> list[dict] | None:
        """The split's worst mistakes, worst first (OUT/{split}_mistakes.jsonl, report.html)."""


class MetricInputs(Protocol):
    def __call__(self, prepared: Prepared, /) -> Callable[[Any], tuple[Any, Any]]:
        """fn(EvalPrediction) -> (predictions, references) as `--metric` (evaluate) metrics take them."""


@dataclass(frozen=True)
class ModelSpec:
    """What the modes need to know about the task's models."""

    auto_model: Any  # an AutoModelFor... class
    head_modules: tuple[str, ...]  # module names that always train (a family may add its own)
    peft_task_type: str | None = None  # peft TaskType (enables peft prompt methods)
    prompt_module: PromptModule | None = None
    cached_features: bool = False  # frozen runs may train the head on cached inputs of the head (feature_cache/)
    feature_split: FeatureSplit | None = None
    after_mode: AfterMode | None = None
    on_load: OnLoad | None = None


@dataclass(frozen=True)
class DataSpec:
    """Raw data in, model inputs out."""

    load_processor: LoadProcessor
    preprocess: Preprocess
    collator: MakeCollator
    make_batch: MakeBatch
    args: type | None = None  # a dataclass of the task's own flags
    input_kind: str = "file"  # what `tunesuite predict OUT ARGS` reads: file paths, or "text" lines of files
    # one raw input as Python code, (import line, expression): the model card's loading snippets predict on it
    example: tuple[str, str] = ("", '"an example"')
    stream: Stream | None = None  # None: the task cannot stream


@dataclass(frozen=True)
class ResultSpec:
    """Model outputs -> metrics, reports and predictions."""

    main_metric: str  # for best-model selection, without the eval_ prefix
    greater_is_better: bool
    compute_metrics: ComputeMetrics
    decode: Decode
    preprocess_logits: PreprocessLogits | None = None
    write_reports: WriteReports | None = None
    format_prediction: FormatPrediction | None = None
    mistakes: Mistakes | None = None
    metric_inputs: MetricInputs | None = None


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
    conv_targets: bool = False  # lora_targets are convolutions (a CNN): methods on Linear layers only refuse it
    channels_last: bool = False  # its Linear targets take 4-D (N, H, W, C) maps (ConvNeXt's pointwise layers)
    staged: bool = False  # its layers come in stages of different widths (Swin, ConvNeXt, ResNet)
    prompt: str | None = None  # the prompt kind for non-peft prompts: "tokens", "pixels", "frames" (own_prompts)
    token_dim: str | None = None  # config attribute of the width of the input embeddings (peft prompts)
    layer_stack: str | None = None  # dotted name of the backbone's ModuleList of layers / stages
    head: tuple[str, ...] = ()  # modules that train with the task's head (e.g. a pooler feeding only it)


TASKS: dict[str, Task] = {}  # name or alias -> Task, filled as task modules are imported
MODES: dict[str, Mode] = {}  # name -> Mode, filled as mode modules are imported
RECIPES: dict[str, Recipe] = {}  # name -> Recipe, registered with the modes they run
# The built-in tasks, by every name they answer to -> the module that registers them. Imported on first use,
# so `--help` and `--version` need no torch; a plugin task registers itself with register_task.
BUILTIN_TASKS = {"text-classification": "tunesuite.tasks.text_classification",
                 "image-classification": "tunesuite.tasks.image_classification",
                 "automatic-speech-recognition": "tunesuite.tasks.asr", "asr": "tunesuite.tasks.asr",
                 "audio-classification": "tunesuite.tasks.audio_classification"}
BUILTIN_MODES = "tunesuite.modes"  # registers full, frozen, lora, prompt, bitfit and the frozen-then-full recipe
FAMILIES: dict[str, Family] = {}  # model_type -> Family, filled when the built-in entries are first asked for
BUILTIN_FAMILIES = "tunesuite.models.families"  # registers the built-in families
DEMOS: dict[str, Callable[[], Any]] = {}  # task name -> its offline demo (what a task script runs without arguments)
BUILTIN_DEMOS = "tunesuite.demos"  # registers the built-in tasks' demos
# (table, name) -> "file:line" of the registration: the same line again is a module imported again, not a clash
_WHERE: dict[tuple[int, str], str] = {}
_FIRST: dict[tuple[int, str], int] = {}  # when each name was first registered: a stable order, whatever came after


class DuplicateName(ValueError):
    """A name registered twice from two places: the second would silently replace the first."""


def cache_decided_by_model(mode_args: Any) -> None:
    """A mode's `feature_cache` when none of its flags blocks the cache: whether the cache serves is the model's
    question (what trains; train/feature_cache.why_not)."""
    return None


def _add(table: dict[str, Any], kind: str, name: str, entry: Any, replace: bool, builtin: str | None = None,
         depth: int = 2) -> None:
    """table[name] = entry, refusing a name already registered elsewhere unless `replace`. The same registering
    line again (a module reloaded, or run with `python -m` and then imported) replaces quietly. `builtin`: the
    module registering the built-in entries of this name, imported first (a no-op while it is the one importing):
    a plugin's name then clashes now, and its replacement is not undone when the built-ins load later."""
    if builtin:
        importlib.import_module(builtin)
    caller = sys._getframe(depth)
    where = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    key = (id(table), name)
    if name in table and not replace and _WHERE.get(key) != where:
        raise DuplicateName(f"{kind} {name!r} is already registered (at {_WHERE.get(key, 'unknown')}); pass "
                            f"replace=True to replace it")
    table[name] = entry
    _WHERE[key] = where
    _FIRST.setdefault(key, len(_FIRST))


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Register `task` under its name and aliases; a name taken by another registration raises DuplicateName."""
    for name in (task.name, *task.aliases):
        _add(TASKS, "task", name, task, replace, BUILTIN_TASKS.get(name))
    return task


def register_mode(name: str, *, help: str, learning_rate: float, replace: bool = False, **options: Any) -> Callable:
    """Decorator: `@register_mode("bitfit", help=..., learning_rate=1e-3)` over `apply(model, ctx) -> model`.
    `options` are Mode's other fields (small_model_learning_rate, args, auto, ...)."""

    def add(apply: Callable) -> Callable:
        _add(MODES, "mode", name, Mode(name, apply, help, learning_rate, **options), replace, BUILTIN_MODES)
        return apply

    return add


def register_recipe(recipe: Recipe, *, replace: bool = False) -> Recipe:
    _add(RECIPES, "recipe", recipe.name, recipe, replace, BUILTIN_MODES)
    return recipe


def register_family(family: Family, *, replace: bool = False) -> Family:
    _add(FAMILIES, "family", family.model_type, family, replace, BUILTIN_FAMILIES)
    return family


def families() -> dict[str, Family]:
    """Every registered family, the built-in ones imported first."""
    importlib.import_module(BUILTIN_FAMILIES)
    return FAMILIES


def find_family(model_type: str) -> Family:
    """The family of `model_type`, or an empty entry (every fact then comes from the module tree)."""
    return families().get(model_type) or Family(model_type)


def register_demo(task_name: str, *, replace: bool = False) -> Callable:
    """Decorator: `@register_demo("text-classification")` over a function that runs the offline demo."""

    def add(run: Callable[[], Any]) -> Callable[[], Any]:
        _add(DEMOS, "demo", task_name, run, replace, BUILTIN_DEMOS if task_name in BUILTIN_TASKS else None)
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


def in_registration_order(table: dict[str, Any]) -> list[Any]:
    """The entries of a registry in the order their names were first registered (the built-ins first), however
    often an entry was replaced, removed or put back since."""
    return [table[name] for name in sorted(table, key=lambda name: _FIRST.get((id(table), name), len(_FIRST)))]


def recipes() -> dict[str, Recipe]:
    """Every registered recipe, the built-in ones (registered with the modes) imported first."""
    importlib.import_module(BUILTIN_MODES)
    return RECIPES
