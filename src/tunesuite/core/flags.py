"""The parser of every flag of a task: HfArgumentParser over the run's dataclasses, with dash spellings first,
negative numbers as values, the modes described from the registry, and one-line errors."""

from __future__ import annotations

import argparse
import copy
import functools
import re
from typing import TYPE_CHECKING, Any

from .. import registry
from ..errors import TunesuiteError
from . import config

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

        def error(self, message: str):  # argparse would print usage and exit; we want one clear line
            raise TunesuiteError(f"{_flag_message(message)} (see --help)")

    return _Parser


def build_parser(task: registry.Task, prog: str | None = None, explicit_only: bool = False) -> HfArgumentParser:
    """The parser of every flag of `task`. explicit_only: unset flags are absent from the result, not defaults."""
    parser = _parser_class()(config.argument_classes(task), allow_abbrev=False, prog=prog)
    parser.add_argument("--config", help="YAML file of flag: value pairs; the command line wins over it.")
    mode = next(a for a in parser._actions if a.dest == "mode")
    mode.choices = [*sorted(registry.MODES), "auto"]  # auto: chosen by core/auto.py
    mode.help = "What trains: " + "; ".join(f"{m.name}: {m.help} (default learning rate {m.learning_rate:g})"
                                            for m in registry.MODES.values()) + \
        "; auto: chosen from the data size, classes and model size (README: Which mode?)."
    if explicit_only:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
    return parser
