"""`--help` for a task, cached: listing every TrainingArguments flag needs transformers (several CPU-seconds,
it imports torch and peft), so the text is kept in the user's cache, keyed by what it depends on.

The defaults it shows are the ones a run of the task uses (ours and the task's over TrainingArguments' own).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable

from tunesuite import registry
from tunesuite.config import user_cache
from tunesuite.config.fields import COMMON_TRAINING_DEFAULTS


def _help_name(task_name: str, prog: str) -> str:
    """The help text also depends on the program name and the terminal's width."""
    return f"help-{user_cache.key(task_name, prog, str(shutil.get_terminal_size().columns))}.txt"


def run_defaults(parser: argparse.ArgumentParser, task: registry.Task) -> None:
    """Show the defaults a run of `task` really gets: TrainingArguments' own (a batch of 8, 3 epochs of ...)
    are replaced by ours and then the task's, as config.resolve merges them; the learning rate is the mode's."""
    ours = {**COMMON_TRAINING_DEFAULTS, "output_dir": f"runs/{task.name}-MODE", **task.training_defaults}
    for action in parser._actions:
        if action.dest in ours:
            action.default = ours[action.dest]
        elif action.dest == "learning_rate":
            action.default = argparse.SUPPRESS
            action.help = f"{action.help or ''} Default: the mode's own (listed under --mode)."


def help_text(task_name: str, prog: str, load_task: Callable[[], registry.Task],
              own_flags: Callable[[argparse.ArgumentParser], None] | None = None) -> str:
    """The `--help` text of a task: from the cache, or built (then cached) by the parser of every flag.
    own_flags adds a command's own flags (compare's) to that parser; `prog` names the command, so it keys them."""
    from tunesuite.config.parse import build_parser

    cacheable, name = user_cache.cacheable(task_name), _help_name(task_name, prog)
    cached = user_cache.read(name) if cacheable else None
    if cached is not None:
        return cached
    task = load_task()
    parser = build_parser(task, prog=prog)
    run_defaults(parser, task)
    if own_flags is not None:
        own_flags(parser)
    text = parser.format_help()
    if cacheable:
        user_cache.write(name, text)
    return text
