"""Resumable runs: mark checkpoints complete once fully written; resume from the newest complete one, and only
one written by the same run (model, mode and its settings, labels)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from tunesuite.errors import TunesuiteError
from tunesuite.files import give_user_modes, write_text_atomic

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments

    from tunesuite.config.resolve import RunConfig

log = logging.getLogger("tunesuite")
MARKER = ".tunesuite-complete"
RECORD = "tunesuite_checkpoint.json"  # who wrote the checkpoint, and when in the epoch
_STEP = re.compile(r"^checkpoint-(\d+)$")
# Mode settings that change how a run computes, not what it trains: a resume may change them.
_NOT_IDENTITY = {"cache_features"}


class MarkCompleteCallback(TrainerCallback):
    """After the Trainer has written checkpoint-N (weights, optimizer, RNG, trainer_state), record the run that
    wrote it and whether the epoch's end (its evaluation, epoch callbacks) had run yet, then mark it done.

    A --save-steps checkpoint at an epoch's last step is written before the epoch's end: TuneTrainer runs that
    end on resume (see TuneTrainer._run_epoch), which the record tells it."""

    identity: dict[str, Any] | None = None  # set by guard_resume; None: the run is not recorded
    _epoch_ended_at = -1

    def on_epoch_end(self, args, state, control, **kwargs):
        self._epoch_ended_at = state.global_step

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                give_user_modes(folder)  # safetensors writes 0600; the rest follows the user's umask
                record = {"epoch_end_done": self._epoch_ended_at == state.global_step, "run": self.identity}
                write_text_atomic(folder / RECORD, json.dumps(record, indent=1) + "\n")
                write_text_atomic(folder / MARKER, str(state.global_step))


def _record(folder: str | Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def epoch_end_pending(folder: str | Path, args: TrainingArguments) -> bool:
    """Whether `folder`, written at an epoch's last step, was written before that epoch's end ran. Without our
    record (another tool, an older tunesuite): so is every checkpoint of --save-strategy steps."""
    record = _record(folder)
    if record is None or "epoch_end_done" not in record:
        return args.save_strategy == "steps"
    return not record["epoch_end_done"]


def run_identity(cfg: RunConfig, labels: list[str] | None) -> dict[str, Any]:
    """What a checkpoint must share with the run resuming it: task, model, mode and the mode's settings, labels."""
    identity: dict[str, Any] = {"task": cfg.task, "--model": cfg.model.model, "--mode": cfg.run.mode}
    if cfg.mode_args is not None:
        for f in dataclasses.fields(cfg.mode_args):
            if f.name not in _NOT_IDENTITY:
                identity["--" + f.name.replace("_", "-")] = getattr(cfg.mode_args, f.name)
    if labels is not None:
        identity["labels"] = list(labels)
    return json.loads(json.dumps(identity, default=str))  # as it reads back from the record


def guard_resume(trainer: Trainer, cfg: RunConfig, labels: list[str] | None, resume: str | None) -> None:
    """Record this run in every checkpoint it writes; refuse to resume from `resume` if another run wrote it."""
    identity = run_identity(cfg, labels)
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, MarkCompleteCallback):
            callback.identity = identity
    if resume is None:
        return
    theirs = (_record(resume) or {}).get("run")
    if not isinstance(theirs, dict):
        log.warning("%s records no run settings (written by another tool or an older tunesuite): resuming without "
                    "checking that it belongs to this run", resume)
        return
    differ = [k for k in dict.fromkeys([*identity, *theirs]) if identity.get(k) != theirs.get(k)]
    if not differ:
        return
    for first in ("task", "--mode"):  # the other settings differ because of these: name these alone
        if first in differ:
            differ = [first]
            break
    raise TunesuiteError(f"--resume-from-checkpoint {resume} was written by a run with {_describe(theirs, differ)}; "
                         f"this run has {_describe(identity, differ)}: resume with the same settings (see "
                         f"{Path(resume) / RECORD}) or start fresh")


def _describe(identity: dict[str, Any], keys: list[str]) -> str:
    parts = []
    for key in keys:
        value = identity.get(key)
        if key == "labels" and isinstance(value, list):
            shown = ", ".join(map(str, value[:6])) + (", ..." if len(value) > 6 else "")
            parts.append(f"{len(value)} labels ({shown})")
        elif isinstance(value, list):
            parts.append(f"{key} {' '.join(map(str, value))}")
        else:
            parts.append(f"{key} {'(unset)' if value is None else value}")
    return ", ".join(parts)


def unfit_message(resume: str, what: str, error: Exception) -> str:
    """One line for a checkpoint whose weights or optimizer state do not load into this run's model."""
    detail = " ".join(str(error).split())
    detail = detail if len(detail) <= 240 else detail[:240] + " ..."
    return (f"--resume-from-checkpoint {resume}: its {what} do not fit this run's model ({detail}); resume with "
            "the settings it was written with (same --model, --mode and mode flags), or start fresh")


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
