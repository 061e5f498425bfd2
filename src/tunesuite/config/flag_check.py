"""A task's command line checked before anything heavy loads: an unknown flag or a value outside a flag's
choices is one `error:` line in a tenth of a second, not after seconds of importing torch and transformers.

The task's full flag list (TrainingArguments' among them) needs transformers to build, so it is kept in the
user's cache beside the --help text (config/user_cache.py), keyed by the versions and this package's source; the
first run of a version builds it. `--mode`'s choices come from the registry, which imports no torch. The real
parser (config/parse.py) still parses everything afterwards; this only answers mistakes early.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tunesuite import registry
from tunesuite.config import user_cache
from tunesuite.config.suggest import did_you_mean, did_you_mean_value
from tunesuite.errors import TunesuiteError

MODE_FLAGS = ("--mode",)


def flag_table(parser: Any) -> dict[str, Any]:
    """Every option string of `parser` -> its dest and choices (what the early check needs)."""
    table: dict[str, Any] = {}
    for action in parser._actions:
        for option in action.option_strings:
            table[option] = {"dest": action.dest, "choices": [str(c) for c in action.choices or []] or None,
                             "takes_value": action.nargs != 0}
    return table


def known_flags(task_name: str) -> dict[str, Any]:
    """The task's flag table: from the cache, else built once (imports the task and transformers) and cached."""
    cacheable, name = user_cache.cacheable(task_name), f"flags-{user_cache.key(task_name)}.json"
    cached = user_cache.read(name) if cacheable else None
    if cached is not None:
        try:
            return json.loads(cached)
        except ValueError:
            pass  # a damaged cache: built again below
    from tunesuite.config.parse import build_parser

    task = registry.find_task(task_name)
    if task is None:
        raise TunesuiteError(f"unknown task {task_name!r}; choose one of {', '.join(registry.task_names())}")
    table = flag_table(build_parser(task))
    if cacheable:
        user_cache.write(name, json.dumps(table))
    return table


def _value_after(argv: list[str], i: int) -> str | None:
    token = argv[i]
    if "=" in token:
        return token.partition("=")[2]
    after = argv[i + 1] if i + 1 < len(argv) else None
    return None if after is None or after.startswith("--") else after


def _check_choice(flag: str, value: str | None, choices: list[str] | None) -> None:
    if choices and value is not None and value not in choices:
        raise TunesuiteError(f"{flag}: invalid choice: {value!r} (choose from {', '.join(choices)})"
                             f"{did_you_mean_value(value, choices)}")


def check_argv(task_name: str, argv: list[str], own: Iterable[str] = ()) -> None:
    """Raise one TunesuiteError for a mode that is not registered, the first unknown flag (with the nearest known
    one) or a value outside its flag's choices; `own`: a command's own flags besides the task's (compare's).
    The mode is checked from the registry alone, so a bad --mode answers even before the flags are cached."""
    own = set(own)
    flags = [(i, token.partition("=")[0]) for i, token in enumerate(argv)
             if token.startswith("--") and token != "--" and token.partition("=")[0] not in own]
    modes = [*registry.modes(), "auto"]
    for i, flag in flags:
        if flag in MODE_FLAGS:
            _check_choice(flag, _value_after(argv, i), modes)
    if not flags:
        return
    table = known_flags(task_name)
    for i, flag in flags:
        if flag not in table:
            dests = {entry["dest"] for entry in table.values()} | {o.lstrip("-").replace("-", "_") for o in own}
            raise TunesuiteError(f"unknown flag {flag}{did_you_mean(flag, dests)}")
        if flag not in MODE_FLAGS:  # the registry is the truth for modes, plugins included
            _check_choice(flag, _value_after(argv, i), table[flag]["choices"])
