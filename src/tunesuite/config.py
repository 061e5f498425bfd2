"""Run configuration: dataclasses with help text, parsed by HfArgumentParser.

Precedence, lowest first: built-in defaults, mode/task defaults, `--config FILE.yaml`, the command line.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .errors import TunesuiteError

MODE_CHOICES = ["full", "frozen", "lora", "prompt"]


@dataclass
class ModelArgs:
    model: str | None = field(default=None, metadata={"help": "Hub model id or local directory to fine-tune."})
    revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit) of --model."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloaded models/datasets."})


@dataclass
class DataArgs:
    dataset: str | None = field(
        default=None,
        metadata={"help": "Hub dataset name, or a local directory / .csv / .tsv / .json / .jsonl / .parquet file."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str = field(
        default="validation",
        metadata={"help": "Split to evaluate on; carved from train when it does not exist."},
    )
    test_split: str = field(default="test", metadata={"help": "Split for final test metrics, when present."})
    validation_split_percentage: int = field(
        default=10, metadata={"help": "Percent of train held out for evaluation when there is no eval split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep at most N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep at most N eval/test rows."})
    label_column: str = field(default="label", metadata={"help": "Column holding the target."})
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "Override the problem type inferred from the labels.",
            "choices": ["single_label_classification", "multi_label_classification", "regression"],
        },
    )


@dataclass
class TuningArgs:
    mode: str = field(
        default="full", metadata={"help": "What trains: full | frozen | lora | prompt.", "choices": MODE_CHOICES}
    )
    trainable_layers: int = field(
        default=0, metadata={"help": "frozen mode: also train the top N encoder layers/stages."}
    )
    unfreeze_after_epochs: float | None = field(
        default=None, metadata={"help": "Train frozen for K epochs, then unfreeze everything (full)."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names LoRA adapts (default: the task's table per model type)."}
    )
    prompt_method: str = field(
        default="prompt_tuning",
        metadata={
            "help": "Soft-prompt method for text models (peft).",
            "choices": ["prompt_tuning", "p_tuning", "prefix_tuning"],
        },
    )
    num_virtual_tokens: int = field(default=20, metadata={"help": "Number of learnable prompt tokens."})
    prompt_init_text: str | None = field(
        default=None, metadata={"help": "prompt_tuning: initialise the prompt from this text."}
    )
    prompt_depth: str = field(
        default="shallow",
        metadata={"help": "ViT prompts: first layer only (shallow) or every layer (deep).",
                  "choices": ["shallow", "deep"]},
    )
    prompt_pad: int = field(default=8, metadata={"help": "ResNet prompts: width in pixels of the learnable border."})
    cache_features: str = field(
        default="auto",
        metadata={"help": "frozen mode: compute backbone features once and train the head on them, when valid "
                          "(auto) or never.", "choices": ["auto", "never"]},
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after N evaluations without improvement; keeps the best model."}
    )


@dataclass
class HubArgs:
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    push_merged: bool = field(
        default=False, metadata={"help": "LoRA: push the adapter merged into the base (a plain checkpoint)."}
    )
    hub_dry_run: bool = field(
        default=False, metadata={"help": "Write what --push-to-hub would upload into OUT/hub_upload/, no network."}
    )


# TrainingArguments defaults that suit fine-tuning better than the library's generic ones.
COMMON_TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 10,
    "report_to": "none",
    "num_train_epochs": 3,
    # Our tasks' losses are per-example means that ignore num_items_in_batch; averaging "tokens" across
    # devices would multiply them by the number of processes under DDP.
    "average_tokens_across_devices": False,
    # Every trainable parameter is used in each forward pass in all four modes: skip DDP's extra graph walk.
    "ddp_find_unused_parameters": False,
}


@dataclass
class RunConfig:
    """Everything one run needs. `saved` is what run_config.yaml holds (enough to repeat the run)."""

    task: str
    model: ModelArgs
    data: DataArgs
    tuning: TuningArgs
    training: TrainingArguments
    hub: HubArgs
    task_args: Any  # the task's own dataclass (TaskSpec.extra_args), or None
    saved: dict[str, Any]
    command: list[str] = field(default_factory=list)  # the arguments as given, secrets redacted


class _Parser(HfArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit; we want one clear line
        raise TunesuiteError(f"{message} (see --help)")


def _dest(token: str) -> str:
    return token.lstrip("-").split("=", 1)[0].replace("-", "_")


def _to_tokens(key: str, value: Any) -> list[str]:
    flag = "--" + key.replace("_", "-")
    if value is None or value == []:
        return []
    if isinstance(value, (list, tuple)):
        return [flag, *map(str, value)]
    return [flag, str(value)]


def _known_dests(parser: _Parser) -> set[str]:
    return {a.dest for a in parser._actions}


def _suggest(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean '--{close[0].replace('_', '-')}'?)" if close else ""


def _canonical_task(name: str) -> str:
    """A task's registered name from one of its aliases (asr -> automatic-speech-recognition)."""
    from .runner import TASKS

    task = TASKS.get(name.replace("_", "-"))
    return task.name if task is not None else name


def expand_config_file(argv: list[str], known: set[str], task_name: str) -> list[str]:
    """Replace `--config FILE.yaml` by the flags it holds, placed ahead of the command line."""
    if "--config" not in argv:
        return list(argv)
    i = argv.index("--config")
    if i + 1 >= len(argv):
        raise TunesuiteError("--config needs a YAML file path")
    path = Path(argv[i + 1])
    if not path.is_file():
        raise TunesuiteError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise TunesuiteError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise TunesuiteError(f"{path} must hold a mapping of flag: value")
    written_for = values.pop("task", task_name)
    if written_for != task_name and _canonical_task(str(written_for)) != task_name:
        raise TunesuiteError(f"{path} is a {written_for} config; run it with that task, not {task_name}")
    tokens: list[str] = []
    for key, value in values.items():
        dest = str(key).replace("-", "_")
        if dest not in known:
            raise TunesuiteError(f"unknown key '{key}' in {path}{_suggest(dest, known)}")
        tokens += _to_tokens(dest, value)
    return tokens + argv[:i] + argv[i + 2 :]


def build_parser(extra: tuple[type, ...] = ()) -> _Parser:
    parser = _Parser((ModelArgs, DataArgs, TuningArgs, HubArgs, *extra, TrainingArguments), allow_abbrev=False)
    parser.add_argument("--config", help="YAML file of flag: value pairs; the command line wins over it.")
    return parser


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _parse(parser: _Parser, tokens: list[str]) -> list[Any]:
    """The dataclasses (without the --config leftover namespace), then the unparsed strings."""
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(tokens, return_remaining_strings=True)
    except ValueError as e:  # TrainingArguments checks combinations of values
        raise TunesuiteError(" ".join(str(e).split())) from None
    return [p for p in parsed if not isinstance(p, argparse.Namespace)] + [rest]


def parse(task: Any, argv: list[str], learning_rates: dict[str, float]) -> RunConfig:
    """Parse argv (plus an optional --config YAML) for a TaskSpec into a RunConfig.

    Raises TunesuiteError on bad input. TrainingArguments the user leaves unset get the common defaults,
    then the task's, then the mode's learning rate.
    """
    extra = (task.extra_args,) if task.extra_args else ()
    parser = build_parser(extra)
    known = _known_dests(parser) - {"config"}
    if "-h" in argv or "--help" in argv:
        parser.parse_args(["--help"])  # prints every flag with its help text, exits 0
    user_tokens = expand_config_file(argv, known, task.name)
    for token in user_tokens:
        if token.startswith("--") and _dest(token) not in known and not token.startswith("--no-"):
            raise TunesuiteError(f"unknown flag {token.split('=')[0]}{_suggest(_dest(token), known)}")
    explicit = {_dest(t) for t in user_tokens if t.startswith("--")}

    first = _parse(parser, user_tokens)
    mode, patience = first[2].mode, first[2].early_stopping_patience
    defaults = {**COMMON_TRAINING_DEFAULTS, "output_dir": f"runs/{task.name}-{mode}", **task.training_defaults,
                "learning_rate": learning_rates[mode]}
    if patience is not None:  # early stopping keeps the best model by the task's main metric
        defaults.update(load_best_model_at_end=True, metric_for_best_model=task.main_metric,
                        greater_is_better=task.greater_is_better)
    default_tokens = [t for k, v in defaults.items() if k not in explicit for t in _to_tokens(k, v)]
    *parsed, rest = _parse(parser, default_tokens + user_tokens)
    model_args, data_args, tuning_args, hub_args, training_args = *parsed[:4], parsed[-1]
    task_args = parsed[4] if extra else None
    if rest:
        raise TunesuiteError(f"unexpected argument {rest[0]!r} (flags take the form --name value)")
    if "dataloader_pin_memory" not in explicit and not _has_accelerator():
        training_args.dataloader_pin_memory = False  # nothing to pin for (and torch warns); not saved: per machine

    saved = {"task": task.name, **asdict(model_args), **asdict(data_args), **asdict(tuning_args),
             **asdict(hub_args)}
    saved.update(asdict(task_args) if task_args else {})
    secret = {"hub_token"}
    for key in sorted((explicit | defaults.keys()) & {f.name for f in fields(TrainingArguments)} - secret):
        saved[key] = _jsonable(getattr(training_args, key))
    saved = {k: v for k, v in saved.items() if v is not None}
    return RunConfig(task.name, model_args, data_args, tuning_args, training_args, hub_args, task_args, saved,
                     redact(argv))


def _has_accelerator() -> bool:
    import torch

    return torch.accelerator.is_available()


def redact(argv: list[str]) -> list[str]:
    """argv with the value of any *token* flag replaced, fit for logs and model cards."""
    out = []
    for i, arg in enumerate(argv):
        after_token_flag = i > 0 and argv[i - 1].startswith("--") and "token" in argv[i - 1]
        out.append("***" if after_token_flag else (arg.split("=")[0] + "=***" if "token=" in arg else arg))
    return out


def save_run_config(cfg: RunConfig, path: Path, final_path: Path | None = None) -> None:
    """Write run_config.yaml to `path`; its header names `final_path`, where it will live (default: `path`)."""
    header = f"# tunesuite run config ({cfg.task}). Repeat with: --config {final_path or path}\n"
    path.write_text(header + yaml.safe_dump(cfg.saved, sort_keys=False))


def die(message: str) -> None:
    """Print one `error:` line and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
