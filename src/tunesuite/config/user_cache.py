"""Small files kept in the user's cache: text that takes importing transformers to build (a task's `--help`, its
flag table), keyed by everything it depends on, so a new version or an edited source builds it again.

A task or mode registered from outside this package is not in the key, so its task is never cached.
"""

from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path

from tunesuite import files, registry

PACKAGE = Path(__file__).resolve().parents[1]  # src/tunesuite: any change to its source refreshes the cache


def cache_dir() -> Path:
    """Where tunesuite caches small files: $TUNESUITE_CACHE, else $XDG_CACHE_HOME/tunesuite (~/.cache/tunesuite)."""
    if os.environ.get("TUNESUITE_CACHE"):
        return Path(os.environ["TUNESUITE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunesuite"


def key(*parts: str) -> str:
    """A short digest of `parts`, the transformers and peft versions and this package's source."""
    digest = hashlib.sha256()
    for part in (metadata.version("transformers"), metadata.version("peft"), *parts):
        digest.update(part.encode() + b"\0")
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:24]


def cacheable(task_name: str) -> bool:
    """False when a task or mode comes from outside this package: its flags are not in the key."""
    outside = [m.apply for m in registry.MODES.values()]
    if task_name in registry.TASKS:
        outside.append(registry.TASKS[task_name].data.preprocess)
    return task_name in registry.BUILTIN_TASKS and all(fn.__module__.startswith("tunesuite.") for fn in outside)


def read(name: str) -> str | None:
    """The cached file's text, or None when it is missing or unreadable (it is then built again)."""
    try:
        return (cache_dir() / name).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def write(name: str, text: str) -> None:
    """Store `text` atomically (a concurrent reader never sees half a file); a read-only home just skips it."""
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        files.write_text_atomic(cache_dir() / name, text)
    except OSError:
        pass
