"""Run configuration: dataclasses with help text, parsed by HfArgumentParser.

Precedence, lowest first: built-in defaults, mode/task defaults, `--config FILE.yaml`, the command line.
transformers is imported only to parse: importing this module and a cached `--help` stay cheap.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import enum
import functools
import hashlib
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import TunesuiteError, die  # noqa: F401 (die: re-exported, its old home)

if TYPE_CHECKING:
    from transformers import HfArgumentParser, TrainingArguments

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
class RunArgs:
    mode: str = field(default="full", metadata={"help": "What trains (see the modes below)."})
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
    run: RunArgs
    mode_args: Any  # the chosen mode's own dataclass (registry Mode.args), or None
    training: TrainingArguments
    hub: HubArgs
    task_args: Any  # the task's own dataclass (TaskSpec.extra_args), or None
    saved: dict[str, Any]
    command: list[str] = field(default_factory=list)  # the arguments as given, secrets redacted
    hub_token: str | None = None  # never in `training` (the Trainer pickles it) nor in `saved`


# Any number, so `--learning-rate -1e-3` reads -1e-3 as a value (argparse alone takes only -1 and -0.5).
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-inf$", re.IGNORECASE)


class _DashHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Lists each flag once, in its dash spelling (`--lora-r`); the underscore one works too."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        dashed = [s for s in action.option_strings if "_" not in s]
        if dashed and len(dashed) < len(action.option_strings):
            action = copy.copy(action)
            action.option_strings = dashed
        return super()._format_action_invocation(action)


def _flag_message(message: str) -> str:
    """argparse's `argument --a-b/--a_b: expected one argument` as `--a-b needs a value`."""
    message = re.sub(r"^argument (-[^/:]+)(/[^:]+)?: ", r"\1: ", message)
    return message.replace(": expected one argument", " needs a value").replace(": expected at least one argument",
                                                                             " needs one value or more")


@functools.cache
def _parser_class() -> type[HfArgumentParser]:
    from transformers import HfArgumentParser

    class _Parser(HfArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, formatter_class=_DashHelp, **kwargs)
            self._negative_number_matcher = NEGATIVE_NUMBER
            for action in self._actions:  # dash spelling first: in the usage line and in error messages
                action.option_strings.sort(key=lambda s: "_" in s)

        def error(self, message: str):  # argparse would print usage and exit; we want one clear line
            raise TunesuiteError(f"{_flag_message(message)} (see --help)")

    return _Parser


def _dest(token: str) -> str:
    return token.lstrip("-").split("=", 1)[0].replace("-", "_")


def _to_tokens(key: str, value: Any) -> list[str]:
    flag = "--" + key.replace("_", "-")
    if value is None or value == []:
        return []
    if isinstance(value, (list, tuple)):
        return [flag, *map(str, value)]
    return [flag, str(value)]


def _known_dests(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions}


def _suggest(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean '--{close[0].replace('_', '-')}'?)" if close else ""


def _canonical_task(name: str) -> str:
    """A task's registered name from one of its aliases (asr -> automatic-speech-recognition)."""
    from ..registry import find_task

    task = find_task(name)
    return task.name if task is not None else name


def _config_path(argv: list[str]) -> tuple[Path | None, list[str]]:
    """The `--config FILE` (or `--config=FILE`) path and argv without it."""
    at = [i for i, a in enumerate(argv) if a == "--config" or a.startswith("--config=")]
    if not at:
        return None, list(argv)
    if len(at) > 1:
        raise TunesuiteError("--config is given more than once; merge the YAML files into one")
    i = at[0]
    if "=" in argv[i]:
        return Path(argv[i].split("=", 1)[1]), argv[:i] + argv[i + 1 :]
    if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
        raise TunesuiteError("--config needs a YAML file path (--config run.yaml)")
    return Path(argv[i + 1]), argv[:i] + argv[i + 2 :]


def _check_value(parser: argparse.ArgumentParser, path: Path, key: str, tokens: list[str]) -> None:
    """Parse one YAML key's flag alone, so a bad value names the file and key instead of only the flag."""
    try:
        parser.parse_known_args(tokens)
    except TunesuiteError as e:
        reason = re.sub(r"^--[^: ]+:? ", "", str(e)).removesuffix(" (see --help)")
        raise TunesuiteError(f"bad value for '{key}' in {path}: {reason}; fix it in the file") from None


def expand_config_file(argv: list[str], parser: argparse.ArgumentParser, task_name: str) -> list[str]:
    """Replace `--config FILE.yaml` by the flags it holds, placed ahead of the command line."""
    path, rest = _config_path(argv)
    if path is None:
        return rest
    if not path.is_file():
        raise TunesuiteError(f"config file {path} " + ("is a folder, not a YAML file" if path.is_dir()
                                                       else "does not exist"))
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise TunesuiteError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TunesuiteError(f"cannot read config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise TunesuiteError(f"{path} must hold a mapping of flag: value (it holds a {type(values).__name__})")
    written_for = values.pop("task", task_name)
    if written_for != task_name and _canonical_task(str(written_for)) != task_name:
        raise TunesuiteError(f"{path} is a {written_for} config; run it with that task, not {task_name}")
    known = _known_dests(parser) - {"config"}
    tokens: list[str] = []
    for key, value in values.items():
        dest = str(key).replace("-", "_")
        if dest not in known:
            raise TunesuiteError(f"unknown key '{key}' in {path}{_suggest(dest, known)}")
        if isinstance(value, dict):
            raise TunesuiteError(f"bad value for '{key}' in {path}: a mapping; give a value or a list")
        _check_value(parser, path, str(key), _to_tokens(dest, value))
        tokens += _to_tokens(dest, value)
    return tokens + rest


def build_parser(extra: tuple[type, ...] = (), prog: str | None = None) -> HfArgumentParser:
    from transformers import TrainingArguments

    from .. import registry

    mode_args = tuple(m.args for m in registry.modes().values() if m.args is not None)
    parser = _parser_class()((ModelArgs, DataArgs, RunArgs, *mode_args, HubArgs, *extra, TrainingArguments),
                             allow_abbrev=False, prog=prog)
    _describe_modes(parser, registry.MODES)
    parser.add_argument("--config", help="YAML file of flag: value pairs; the command line wins over it.")
    return parser


def _describe_modes(parser: argparse.ArgumentParser, modes: dict) -> None:
    """--mode's choices and help from the registry: each mode's name, what it trains, its default learning rate."""
    action = next(a for a in parser._actions if a.dest == "mode")
    action.choices = sorted(modes)
    action.help = "What trains: " + "; ".join(f"{m.name}: {m.help} (default learning rate {m.learning_rate:g})"
                                              for m in modes.values()) + "."


def _help_key(task_name: str, prog: str) -> str:
    """What the help text depends on: versions, this package's source, the task, program name, terminal width."""
    digest = hashlib.sha256()
    for part in (metadata.version("transformers"), task_name, prog, str(shutil.get_terminal_size().columns)):
        digest.update(part.encode() + b"\0")
    for source in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:24]


def cache_dir() -> Path:
    """Where tunesuite caches small files: $TUNESUITE_CACHE, else $XDG_CACHE_HOME/tunesuite (~/.cache/tunesuite)."""
    if os.environ.get("TUNESUITE_CACHE"):
        return Path(os.environ["TUNESUITE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunesuite"


def help_text(task_name: str, prog: str, load_task: Callable[[], Any]) -> str:
    """The `--help` text for a task. Listing every TrainingArguments flag needs transformers.training_args
    (several CPU-seconds: it imports torch and peft), so the text is cached, keyed by _help_key."""
    from ..registry import BUILTIN_TASKS

    path = cache_dir() / f"help-{_help_key(task_name, prog)}.txt"
    try:
        return path.read_text()
    except OSError:
        pass
    task = load_task()
    text = build_parser((task.data.args,) if task.data.args else (), prog=prog).format_help()
    if task_name not in BUILTIN_TASKS:
        return text  # a plugin task's flags live outside this package's source: the key would not see them
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(text)
        partial.replace(path)  # atomic: a concurrent --help never reads half a file
    except OSError:
        pass  # a read-only home: no cache, still the help
    return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _parse(parser: HfArgumentParser, tokens: list[str]) -> list[Any]:
    """The dataclasses (without the --config leftover namespace), then the unparsed strings."""
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(tokens, return_remaining_strings=True)
    except ValueError as e:  # TrainingArguments checks combinations of values
        raise TunesuiteError(" ".join(str(e).split())) from None
    return [p for p in parsed if not isinstance(p, argparse.Namespace)] + [rest]


def parse(task: Any, argv: list[str]) -> RunConfig:
    """Parse argv (plus an optional --config YAML) for a TaskSpec into a RunConfig.

    Raises TunesuiteError on bad input. TrainingArguments the user leaves unset get the common defaults,
    then the task's, then the mode's learning rate.
    """
    from transformers import TrainingArguments

    if "-h" in argv or "--help" in argv:
        print(help_text(task.name, Path(sys.argv[0]).name, lambda: task), end="")
        raise SystemExit(0)
    extra = (task.data.args,) if task.data.args else ()
    parser = build_parser(extra)
    known = _known_dests(parser) - {"config"}
    user_tokens = expand_config_file(argv, parser, task.name)
    for token in user_tokens:
        if token.startswith("--") and _dest(token) not in known and not token.startswith("--no-"):
            raise TunesuiteError(f"unknown flag {token.split('=')[0]}{_suggest(_dest(token), known)}")
    explicit = {_dest(t) for t in user_tokens if t.startswith("--")}

    from .. import registry

    first = _parse(parser, user_tokens)
    run_args = next(p for p in first if isinstance(p, RunArgs))
    mode, patience = registry.MODES[run_args.mode], run_args.early_stopping_patience
    defaults = {**COMMON_TRAINING_DEFAULTS, "output_dir": f"runs/{task.name}-{mode.name}", **task.training_defaults,
                "learning_rate": mode.learning_rate}
    if patience is not None:  # early stopping keeps the best model by the task's main metric
        defaults.update(load_best_model_at_end=True, metric_for_best_model=task.results.main_metric,
                        greater_is_better=task.results.greater_is_better)
    default_tokens = [t for k, v in defaults.items() if k not in explicit for t in _to_tokens(k, v)]
    *parsed, rest = _parse(parser, default_tokens + user_tokens)
    by_type = {type(p): p for p in parsed}
    model_args, data_args, run_args = by_type[ModelArgs], by_type[DataArgs], by_type[RunArgs]
    hub_args = by_type[HubArgs]
    training_args, task_args = parsed[-1], by_type.get(task.data.args)
    mode_args = by_type.get(mode.args)
    _check_foreign_mode_flags(explicit, mode, [p for p in parsed if type(p) in _mode_arg_classes(registry.MODES)])
    if rest:
        raise TunesuiteError(f"unexpected argument {rest[0]!r} (flags take the form --name value)")
    if "dataloader_pin_memory" not in explicit and not _has_accelerator():
        training_args.dataloader_pin_memory = False  # nothing to pin for (and torch warns); not saved: per machine

    hub_token, training_args.hub_token = training_args.hub_token, None  # kept out of every file a run writes
    saved = {"task": task.name, **asdict(model_args), **asdict(data_args), **asdict(run_args),
             **(asdict(mode_args) if mode_args else {}), **asdict(hub_args)}
    saved.update(asdict(task_args) if task_args else {})
    secret = {"hub_token"}
    for key in sorted((explicit | defaults.keys()) & {f.name for f in fields(TrainingArguments)} - secret):
        saved[key] = _jsonable(getattr(training_args, key))
    saved = {k: v for k, v in saved.items() if v is not None}
    return RunConfig(task.name, model_args, data_args, run_args, mode_args, training_args, hub_args, task_args, saved,
                     redact(argv), hub_token)


def _mode_arg_classes(modes: dict) -> set[type]:
    return {m.args for m in modes.values() if m.args is not None}


def _check_foreign_mode_flags(explicit: set[str], mode: Any, mode_args: list[Any]) -> None:
    """A flag of another mode, set to other than its default, is a mistake: say whose flag it is."""
    for args in mode_args:
        if type(args) is mode.args:
            continue
        for f in fields(args):
            if f.name in explicit and getattr(args, f.name) != f.default:
                owner = type(args)._argument_group_name.removeprefix("mode ")
                raise TunesuiteError(f"--{f.name.replace('_', '-')} is a flag of --mode {owner}; this run is "
                                     f"--mode {mode.name} (drop the flag or change the mode)")


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
