"""The exception types for problems with a user's input, and how entry points report them."""

from __future__ import annotations

import sys
from typing import NoReturn


class TunesuiteError(Exception):
    """Bad input (flag, file, column, value). Entry points print it as one `error:` line and exit 2."""


class RunInterrupted(TunesuiteError):
    """A run stopped by Ctrl-C. Entry points print its message (e.g. what was saved, how to resume) as one
    `interrupted: ...` line and exit 130, the shell's status for SIGINT."""

    exit_code = 130


def die(message: str) -> NoReturn:
    """Print one `error:` line and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def interrupted(error: BaseException) -> NoReturn:
    """Print one `interrupted: ...` line (the error's message, if it has one) and exit 130."""
    message = " ".join(str(error).split()) if isinstance(error, TunesuiteError) else ""
    if not message.startswith("interrupted"):
        message = f"interrupted: {message or 'stopped by Ctrl-C before the run finished'}"
    print(message, file=sys.stderr)
    sys.exit(RunInterrupted.exit_code)


def fail(error: BaseException) -> NoReturn:
    """How entry points end on a TunesuiteError or KeyboardInterrupt: one stderr line and the exit status.

    Ctrl-C (KeyboardInterrupt, or an error with exit_code 130 such as RunInterrupted) -> `interrupted: ...`, 130;
    any other TunesuiteError -> `error: ...`, 2.
    """
    if isinstance(error, KeyboardInterrupt) or getattr(error, "exit_code", 2) == RunInterrupted.exit_code:
        interrupted(error)
    die(str(error))
