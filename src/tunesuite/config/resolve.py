"""The run configuration: `resolve` is the one place where
built-in defaults < the task's and mode's defaults < YAML < command line (or library keywords) are merged.

`resolve` takes typed values (parse.py turns argv, YAML and keywords into them), builds every dataclass
once with HfArgumentParser.parse_dict, and returns a RunConfig that nothing changes afterwards.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from tunesuite import registry
from tunesuite.config import precision
from tunesuite.config.fields import COMMON_TRAINING_DEFAULTS, DataArgs, HubArgs, ModelArgs, RunArgs, RunConfig
from tunesuite.errors import TunesuiteError
from tunesuite.files import write_text_atomic

__all__ = ["RunConfig", "argument_classes", "count_params", "default_values", "get_mode", "resolve",
           "save_run_config"]
log = logging.getLogger("tunesuite")


def argument_classes(task: registry.Task) -> tuple[type, ...]:
    """Every dataclass a run of `task` is parsed into: ours, each registered mode's, the task's, the Trainer's."""
    from transformers import TrainingArguments

    mode_args = tuple(m.args for m in registry.modes().values() if m.args is not None)
    task_args = (task.data.args,) if task.data.args else ()
    return (ModelArgs, DataArgs, RunArgs, *mode_args, HubArgs, *task_args, TrainingArguments)


def get_mode(name: str) -> registry.Mode:
    modes = registry.modes()
    if name not in modes:
        raise TunesuiteError(f"unknown mode {name!r}; choose one of {', '.join(sorted(modes))}")
    return modes[name]


def count_params(model: str) -> int:
    """The backbone's parameters, counted on the meta device (nothing is allocated or read but the config)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model)
    with torch.device("meta"):
        backbone = AutoModel.from_config(config)
    return sum(p.numel() for p in backbone.parameters())


def _params_or_none(model: str | None) -> int | None:
    """count_params, or None when the config cannot be read here (loading the model then says why)."""
    if not model:
        return None
    try:
        return count_params(str(Path(model).expanduser()))
    except (OSError, ValueError, KeyError) as e:
        log.debug("learning rate: could not count the parameters of %s (%s); the larger models' default", model, e)
        return None


def default_values(task: registry.Task, mode: registry.Mode, user: dict[str, Any],
                   decided: precision.Precision | None = None) -> dict[str, Any]:
    """TrainingArguments defaults of a run: ours, then the task's, then the mode's learning rate for the model's
    size (counted only when the user set no learning rate); `decided`: the run's precision, if already known."""
    defaults = {**COMMON_TRAINING_DEFAULTS, "output_dir": f"runs/{task.name}-{mode.name}", **task.training_defaults}
    if "learning_rate" not in user:
        defaults["learning_rate"] = mode.learning_rate_for(_params_or_none(user.get("model")))
    if user.get("early_stopping_patience") is not None:  # early stopping keeps the best model by the main metric
        defaults.update(load_best_model_at_end=True, metric_for_best_model=task.results.main_metric,
                        greater_is_better=task.results.greater_is_better)
    accelerator = _has_accelerator()
    if not accelerator:
        defaults["dataloader_pin_memory"] = False  # nothing to pin for (and torch warns); not saved: per machine
    # --bf16 on a CPU means the Trainer's CPU autocast; auto: what this machine runs natively. Not saved: per machine
    defaults.update((decided or run_precision(mode, user, accelerator)).flags)
    return defaults


def _auto_precision(user: dict[str, Any]) -> bool:
    return user.get("precision", "auto") == "auto" and not any(f in user for f in precision.HALF_FLAGS)


def run_precision(mode: registry.Mode, user: dict[str, Any], accelerator: bool | None = None
                  ) -> precision.Precision:
    """What the run trains in and why (config.precision.decide on this machine); the log's first lines say it."""
    model_type = precision.model_type_of(user.get("model")) if mode.bf16_loss and _auto_precision(user) else None
    return precision.decide(str(user.get("precision", "auto")), user, mode, model_type,
                            _has_accelerator() if accelerator is None else accelerator)


def resolve(task: registry.Task, user: dict[str, Any], command: list[str] | None = None) -> RunConfig:
    """The RunConfig of `task` for the user's typed values (field name -> value; see parse.py)."""
    from transformers import HfArgumentParser, TrainingArguments

    mode = get_mode(str(user.get("mode", registry.DEFAULT_MODE)))
    _check_foreign_mode_flags(user, mode)
    decided = run_precision(mode, user)
    defaults = default_values(task, mode, user, decided)
    values = {**defaults, **user}
    if values.get("model") and Path(values["model"]).expanduser().is_dir():  # absolute: adapters find their base
        values["model"] = str(Path(values["model"]).expanduser().resolve())
    hub_token = values.pop("hub_token", None)  # kept out of the TrainingArguments the Trainer pickles into OUT
    try:
        # a mode's flags may extend another's (setfit: few-shot's --shots); parse_dict reads the dataclasses, so an
        # option string that two of them share is resolved, not refused (build_parser still adds each flag once)
        parsed = HfArgumentParser(argument_classes(task), conflict_handler="resolve").parse_dict(values)
    except ValueError as e:  # TrainingArguments checks values and combinations of values
        raise TunesuiteError(_training_error(e, user)) from None
    by_type = {type(p): p for p in parsed}
    training = by_type[TrainingArguments]
    mode_args, task_args = by_type.get(mode.args), by_type.get(task.data.args)
    ours = [by_type[c] for c in (ModelArgs, DataArgs, RunArgs)] + ([mode_args] if mode_args else [])
    saved: dict[str, Any] = {"task": task.name}
    for args in [*ours, by_type[HubArgs], *([task_args] if task_args else [])]:
        saved.update(asdict(args))
    saved["model"] = values.get("model")
    per_machine = {"dataloader_pin_memory", "use_cpu", *precision.HALF_FLAGS}
    kept = ({*user, *defaults} - {"hub_token", *per_machine}) | (per_machine & user.keys())
    for key in sorted(kept & {f.name for f in fields(TrainingArguments)}):
        saved[key] = _jsonable(getattr(training, key))
    saved = {k: v for k, v in saved.items() if v is not None}
    name = "bf16" if training.bf16 else "fp16" if training.fp16 else "fp32"
    return RunConfig(task.name, *ours[:3], mode_args, training, by_type[HubArgs], task_args, saved,
                     list(command or []), hub_token,
                     precision=f"{name} ({decided.why})" if decided.name == name else name)


def _training_error(error: ValueError, user: dict[str, Any]) -> str:
    """TrainingArguments' own refusal in our terms: its field names as our flags, led by the flags the user set
    that it names (`--warmup-steps -1: Got --warmup-steps = -1.0, ...`)."""
    from transformers import TrainingArguments

    text = re.sub(r"\b(?:Interval|Save)Strategy\.([A-Z]+)\b", lambda m: m.group(1).lower(),  # enums as typed
                  " ".join(str(error).split()))
    names = sorted({f.name for f in fields(TrainingArguments)}, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(?:--)?(" + "|".join(map(re.escape, names)) + r")\b")
    named = list(dict.fromkeys(m.group(1) for m in pattern.finditer(text)))
    text = pattern.sub(lambda m: "--" + m.group(1).replace("_", "-"), text)
    given = [f"--{n.replace('_', '-')} {_typed(user[n])}" for n in named if n in user]
    return f"{', '.join(given) or 'training arguments'}: {text} (fix the value; see --help)"


def _typed(value: Any) -> str:
    """A value as the user would type it (-1, not -1.0; true, not True)."""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(_jsonable(value))


def _check_foreign_mode_flags(user: dict[str, Any], mode: registry.Mode) -> None:
    """A flag of another mode, set to other than its default, is a mistake: say whose flag it is."""
    own = {f.name for f in fields(mode.args)} if mode.args else set()
    for other in registry.modes().values():
        if other.args is None or other is mode:
            continue
        for f in fields(other.args):
            if f.name in user and f.name not in own and user[f.name] != _default(f):
                raise TunesuiteError(f"--{f.name.replace('_', '-')} is a flag of --mode {other.name}; this run is "
                                     f"--mode {mode.name} (drop the flag or change the mode)")


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _has_accelerator() -> bool:
    import torch

    return torch.accelerator.is_available()


# What one invocation asked of its folder, not how the run trains: repeating a run with --config must not clear a
# folder unasked.
NOT_REPEATED = ("overwrite_output_dir",)


def save_run_config(cfg: RunConfig, path: Path, final_path: Path | None = None) -> None:
    """Write run_config.yaml to `path` (atomically); its header names `final_path`, where it will live (default:
    `path`)."""
    header = f"# tunesuite run config ({cfg.task}). Repeat with: --config {final_path or path}\n"
    saved = {k: v for k, v in cfg.saved.items() if k not in NOT_REPEATED}
    write_text_atomic(path, header + yaml.safe_dump(saved, sort_keys=False))
