"""What the user typed, as typed values: the command line (argparse through HfArgumentParser), a `--config`
YAML file and library keywords each become a dict of field name -> value, which config.resolve merges once.
Parsing chooses and trains nothing: `--mode auto` stays "auto" here; the entry resolves it before config.resolve.

A YAML or keyword value goes through the same argparse conversion as the command line, so all three agree
(`1e-3` in YAML is a float, `[a, b]` a list), and a bad value names where it came from.

The parser of every flag of a task: HfArgumentParser over the run's dataclasses, with dash spellings first,
negative numbers as values, the modes described from the registry, and one-line errors.
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tunesuite import registry
from tunesuite.config import resolve as config
from tunesuite.config.suggest import did_you_mean
from tunesuite.errors import TunesuiteError

if TYPE_CHECKING:
    from transformers import HfArgumentParser


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

        def _parse_dataclass_field(self, parser: Any, field: Any) -> None:
            """Each flag once: a mode's dataclass that extends another's (setfit's extends few-shot's) inherits the
            same field objects, added with the first; a different field of the same name still conflicts."""
            added = self.__dict__.setdefault("_added_fields", set())
            if id(field) not in added:
                added.add(id(field))
                super()._parse_dataclass_field(parser, field)

        def error(self, message: str):  # argparse would print usage and exit; we want one clear line
            raise TunesuiteError(f"{_flag_message(message)} (see --help)")

    return _Parser


def build_parser(task: registry.Task, prog: str | None = None, explicit_only: bool = False) -> HfArgumentParser:
    """The parser of every flag of `task`. explicit_only: unset flags are absent from the result, not defaults."""
    parser = _parser_class()(config.argument_classes(task), allow_abbrev=False, prog=prog)
    parser.add_argument("--config", help="YAML file of flag: value pairs; the command line wins over it.")
    mode = next(a for a in parser._actions if a.dest == "mode")
    mode.choices = [*sorted(registry.MODES), "auto"]  # auto: chosen by choose/auto.py
    mode.help = "What trains: " + "; ".join(f"{m.name}: {m.help}" + ("" if m.trains_nothing else
                                            f" (default learning rate {m.learning_rate_for(0):g} "
                                            f"on a small model, {m.learning_rate:g} on a larger one)")
                                            for m in registry.MODES.values()) + \
        "; auto: chosen from the data size, classes and model size (README: Which mode?)."
    if explicit_only:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
    return parser


__all__ = ["argv_values", "as_flags", "build_parser", "coerce", "command_values", "keyword_values", "redact",
           "yaml_values"]


def command_values(task: registry.Task, argv: list[str]) -> dict[str, Any]:
    """The typed values of a command line, with an optional `--config FILE.yaml` that the command line beats."""
    path, rest = _config_path(argv)
    parser = build_parser(task, explicit_only=True)
    values = yaml_values(parser, task, path) if path else {}
    values.update(argv_values(parser, rest))
    return values


def argv_values(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    namespace, rest = parser.parse_known_args(argv)
    for token in rest:
        if token.startswith("-"):
            name = token.lstrip("-").split("=", 1)[0].replace("-", "_")
            raise TunesuiteError(f"unknown flag {token.split('=')[0]}{_suggest(name, _dests(parser))}")
        raise TunesuiteError(f"unexpected argument {token!r} (flags take the form --name value)")
    return vars(namespace)


def keyword_values(task: registry.Task, options: dict[str, Any]) -> dict[str, Any]:
    """Library keywords (`learning_rate=1e-4`, `text_column=["q", "a"]`) as typed values; None means unset."""
    parser = build_parser(task, explicit_only=True)
    return {key: coerce(parser, key, value, "keyword") for key, value in options.items() if value is not None}


def yaml_values(parser: argparse.ArgumentParser, task: registry.Task, path: Path) -> dict[str, Any]:
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
    written_for = str(values.pop("task", task.name))
    other = registry.find_task(written_for)
    if written_for != task.name and (other is None or other.name != task.name):
        raise TunesuiteError(f"{path} is a {written_for} config; run it with that task, not {task.name}")
    typed = {}
    for key, value in values.items():
        if value is None or value == []:  # unset in the file: the default applies
            continue
        if isinstance(value, dict):
            raise TunesuiteError(mapping_message(parser, str(key), value, f"in {path}"))
        typed[str(key).replace("-", "_")] = coerce(parser, str(key), value, f"in {path}")
    return typed


def coerce(parser: argparse.ArgumentParser, key: str, value: Any, where: str) -> Any:
    """`value` converted exactly as the command line would convert `--key value`."""
    dest = key.replace("-", "_")
    if isinstance(value, dict):
        raise TunesuiteError(mapping_message(parser, key, value, where))
    if dest not in _dests(parser) or dest == "config":
        raise TunesuiteError(f"unknown {'option' if where == 'keyword' else 'key'} '{key}'"
                             f"{'' if where == 'keyword' else ' ' + where}{_suggest(dest, _dests(parser))}")
    flag = "--" + dest.replace("_", "-")
    tokens = [flag, *map(str, value)] if isinstance(value, (list, tuple)) else [flag, str(value)]
    try:
        namespace, _ = parser.parse_known_args([f"{tokens[0]}={tokens[1]}", *tokens[2:]] if len(tokens) == 2
                                               else tokens)
    except TunesuiteError as e:
        reason = re.sub(r"^--[^: ]+:? ", "", str(e)).removesuffix(" (see --help)")
        raise TunesuiteError(f"bad value for '{key}' {where}: {reason}" +
                             ("" if where == "keyword" else "; fix it in the file")) from None
    return getattr(namespace, dest)


def mapping_message(parser: argparse.ArgumentParser, key: str, value: dict, where: str) -> str:
    """A nested section (`lora: {r: 8}`) where flat flag names are expected, and the flat spelling of each entry:
    `lora_r: 8` when `<key>_<entry>` is a flag (the mode's own prefix), else the entry itself when it is one."""
    known, keyword, spelled, flags, unknown = _dests(parser) - {"config"}, where == "keyword", [], [], []
    for inner, item in value.items():
        name = str(inner).replace("-", "_")
        flat = next((n for n in (f"{key.replace('-', '_')}_{name}", name) if n in known), None)
        if flat is None or isinstance(item, dict):
            unknown.append(str(inner))
            continue
        many = isinstance(item, (list, tuple))
        spelled.append(f"{flat}={item!r}" if keyword else f"{flat}: " + (f"[{', '.join(map(str, item))}]" if many
                                                                         else str(item)))
        flags.append(f"--{flat.replace('_', '-')} " + (" ".join(map(str, item)) if many else str(item)))
    lead = (f"option '{key}' is a mapping, but each option is one flag" if keyword else
            f"'{key}' {where} is a mapping (a section), but each key is one flag with a single value or a list")
    if spelled:
        fix = f"write {', '.join(spelled)} ({'the flag' if len(flags) == 1 else 'the flags'} {' '.join(flags)})"
        return f"{lead}: {fix}" + (f"; no flag matches {', '.join(unknown)}" if unknown else "")
    if key.replace("-", "_") in known:  # a flag after all, given a mapping for its value
        return f"bad value for '{key}' {where}: a mapping; give '{key}' a single value or a list"
    return f"{lead}: write each setting as its own flag name{_suggest(key.replace('-', '_'), known)} (see --help)"


def as_flags(values: dict[str, Any]) -> list[str]:
    """Typed values as the command line that gives them (for the model card), secrets redacted."""
    argv: list[str] = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag, *map(str, value)] if isinstance(value, (list, tuple)) else [flag, str(value)]
    return redact(argv)


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions} - {"help"}


def _suggest(name: str, known: set[str]) -> str:
    return did_you_mean(name, known)


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


def redact(argv: list[str]) -> list[str]:
    """argv with the value of any *token* flag replaced, fit for logs and model cards."""
    out = []
    for i, arg in enumerate(argv):
        after_token_flag = i > 0 and argv[i - 1].startswith("--") and "token" in argv[i - 1]
        out.append("***" if after_token_flag else (arg.split("=")[0] + "=***" if "token=" in arg else arg))
    return out
