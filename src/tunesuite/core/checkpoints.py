"""Resumable runs: mark checkpoints complete once fully written; resume from the newest complete one."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from transformers import TrainerCallback

from ..errors import TunesuiteError
from ..publish.files import write_text_atomic

log = logging.getLogger("tunesuite")
MARKER = ".tunesuite-complete"
_STEP = re.compile(r"^checkpoint-(\d+)$")


class MarkCompleteCallback(TrainerCallback):
    """After the Trainer has written checkpoint-N (weights, optimizer, RNG, trainer_state), mark it done."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                write_text_atomic(folder / MARKER, str(state.global_step))


def is_complete(folder: Path) -> bool:
    """Marked by us, or (written by another tool) its trainer_state.json, saved last, parses."""
    if (folder / MARKER).exists():
        return True
    try:
        json.loads((folder / "trainer_state.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def latest_complete(output_dir: Path) -> Path | None:
    found = sorted(((int(m.group(1)), p) for p in output_dir.glob("checkpoint-*")
                    if p.is_dir() and (m := _STEP.match(p.name))), reverse=True)
    for _, folder in found:
        if is_complete(folder):
            return folder
        log.warning("skipping %s: interrupted while it was being written", folder)
    return None


def resume_path(wanted: str | None, output_dir: str) -> str | None:
    """`auto`: the newest complete checkpoint in output_dir (or a fresh start); a path: that checkpoint."""
    if wanted is None:
        return None
    if wanted == "auto":
        last = latest_complete(Path(output_dir)) if Path(output_dir).is_dir() else None
        log.info("resume auto: %s", last or "no complete checkpoint, starting fresh")
        return str(last) if last else None
    if not Path(wanted).is_dir() or not is_complete(Path(wanted)):
        raise TunesuiteError(f"--resume-from-checkpoint {wanted}: not a complete checkpoint folder; "
                             "use auto to pick the newest complete one")
    return wanted
