"""Near-miss flag names: "did you mean --num-train-epochs?" for `--epochs`, on every command.

difflib's close matches catch typos (`--learnig-rate`); a name that is one part of a longer flag (`--epochs`,
`--lr`) is not close by difflib's ratio, so whole-word parts and the first letters of the words are tried too.
argparse's own suggest_on_error exists only from Python 3.14."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

ABBREVIATIONS = {"lr": "learning_rate", "bs": "per_device_train_batch_size"}  # common short names


def close_flags(name: str, known: Iterable[str]) -> list[str]:
    """The known flag names (as dests, `num_train_epochs`) that `name` (`epochs`, `--learnig-rate`) most likely
    meant, best first; empty when none is near."""
    key = name.lstrip("-").split("=", 1)[0].replace("-", "_")
    names = sorted(set(known))
    if key in ABBREVIATIONS and ABBREVIATIONS[key] in names:
        return [ABBREVIATIONS[key]]
    found = difflib.get_close_matches(key, names, n=1)
    if found:
        return found
    parts = [n for n in names if key in n.split("_") or n.endswith("_" + key) or n.startswith(key + "_")]
    initials = [n for n in names if len(key) > 1 and "".join(w[:1] for w in n.split("_")) == key]
    return sorted(parts, key=len)[:1] if parts else initials[:1]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean '--num-train-epochs'?)`, or "" when nothing is near."""
    found = close_flags(name, known)
    if not found:
        return ""
    return " (did you mean " + " or ".join(f"'--{n.replace('_', '-')}'" for n in found) + "?)"


def did_you_mean_value(value: str, choices: Iterable[str]) -> str:
    """` (did you mean 'lora'?)` for a value outside a flag's choices, or "" when none is near."""
    found = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
    return f" (did you mean {found[0]!r}?)" if found else ""
