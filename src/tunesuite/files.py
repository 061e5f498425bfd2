"""Atomic file writes: a crash or a full disk mid-write leaves the old file or the new one, never half of one,
and never a temp file beside them.

Every file a run writes goes through here: text via `write_text_atomic`, anything a library writes to a path
(a figure, torch.save, safetensors) via `atomic_path`, which hands the writer a temp path in the same folder
and renames it into place only when the writer returned.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".tmp-"  # in every temp name: `.NAME.tmp-PID.SUFFIX`
PRIVATE = 0o600  # what a writer that goes through mkstemp leaves (safetensors 0.8 saves this way)


def user_mode() -> int:
    """The mode the user's umask gives a new file (0644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def give_user_modes(folder: Path | str) -> None:
    """Files in `folder` (not recursive) that a library wrote private (mode 0600, as mkstemp makes them) get the
    mode the user's umask gives, like every other file of the run; others are left alone."""
    mode = user_mode()
    for file in Path(folder).iterdir():
        if file.is_file() and not file.is_symlink() and file.stat().st_mode & 0o777 == PRIVATE != mode:
            os.chmod(file, mode)


def temp_name(path: Path) -> Path:
    """The temp file beside `path`: hidden, unique to this process, with the same suffix (savefig reads it)."""
    return path.with_name(f".{path.stem}{TEMP_MARK}{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path for a writer; on success it replaces `path`, on any error it is removed.

        with atomic_path(out / "confusion.png") as tmp:
            fig.savefig(tmp)
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb") as f:  # the bytes reach the disk before the name does
                os.fsync(f.fileno())
            if tmp.stat().st_mode & 0o777 == PRIVATE:  # a writer that made it with mkstemp: the user's umask wins
                os.chmod(tmp, user_mode())
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def leftover_temps(folder: Path) -> list[Path]:
    """Temp files a killed writer left in `folder` (not recursive)."""
    return [p for p in folder.glob(f".*{TEMP_MARK}*") if p.is_file()] if folder.is_dir() else []
