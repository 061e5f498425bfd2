"""Guards around one run: inputs checked before anything loads, one run per output folder, clear messages
when a run is interrupted or the disk fills up (saying what was kept and how to resume)."""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import logging
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tunesuite.config.resolve import RunConfig
from tunesuite.errors import TunesuiteError
from tunesuite.models.finished_run import check_task
from tunesuite.train.checkpoints import latest_complete
from tunesuite.train.timing import parse_duration

if TYPE_CHECKING:
    from transformers import TrainingArguments

LOCK_NAME = ".tunesuite.lock"
RESUME = "--resume-from-checkpoint auto"
OVERWRITE = "--overwrite-output-dir"
log = logging.getLogger("tunesuite")

# The top-level names a tunesuite run (or `tunesuite eval`, `compare`, a hub dry run) writes into its --output-dir:
# the model or adapter with its config and processor files, the Trainer's files, our results, reports and figures
# per split, checkpoints, TensorBoard logs. Anything else in the folder is the user's: never cleared.
_PER_SPLIT = tuple(f"{split}_{kind}" for split in ("train", "eval", "test")
                   for kind in ("per_class*", "confusion*", "mistakes*", "predictions*", "results.json",
                                "reliability*", "roc_curve*", "pr_curve*"))
RUN_FILES = (*_PER_SPLIT,
    "config.json", "generation_config.json", "adapter_config.json", "*.safetensors", "*.safetensors.index.json",
    "pytorch_model*.bin", "adapter_model.*", "training_args.bin", "tokenizer*", "vocab*", "merges.txt",
    "special_tokens_map.json", "added_tokens.json", "spiece.model", "sentencepiece*.model", "chat_template.*",
    "preprocessor_config.json", "processor_config.json", "feature_extractor_config.json",
    "run_config.yaml", "all_results.json", "trainer_state.json", "run_summary.json", "README.md", "report.html",
    "learning_curves.png", "predictions.jsonl", "checkpoint-*", "runs",
    "hub_upload", "evaluation", "compare_run.json", "duplicates.csv", "near_duplicates.csv",
    ".saving", ".*.tmp-*",  # hidden: staging of the final model, temps of a killed writer
)
# Any of these means the folder holds a run that finished (its final model, results or config were saved).
FINISHED = ("all_results.json", "run_config.yaml", "model.safetensors", "model.safetensors.index.json",
            "adapter_model.safetensors", "pytorch_model.bin", "adapter_model.bin")


def check_output_dir(value: str) -> None:
    """--output-dir must be a folder we can write, or creatable under the nearest existing parent."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise TunesuiteError(f"--output-dir {value} is an existing file, not a folder; choose another path")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise TunesuiteError(f"--output-dir {value}: {parent} is a file, so the folder cannot be created; "
                             "choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        where = "this folder" if parent == path else f"{parent}, where it would be created"
        raise TunesuiteError(f"--output-dir {value}: cannot write to {where} (permission denied); "
                             "choose a folder you can write to")


def check_model_path(value: str) -> None:
    """A --model that is written like a path (not a Hub id) must exist."""
    looks_like_path = value.startswith((".", "/", "~")) or (os.sep in value and value.count("/") != 1)  # org/name: Hub
    if looks_like_path and not Path(value).expanduser().exists():
        raise TunesuiteError(f"model folder {value} does not exist; check --model (a local folder or a Hub id "
                             "such as bert-base-uncased)")


def is_run_file(name: str) -> bool:
    """Whether a top-level entry of an output folder is one a tunesuite run writes (RUN_FILES)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES)


def _listed(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_not_model_folder(output_dir: str, model: str | None) -> None:
    """The run writes config.json, tokenizer files and weights into --output-dir: never into the model it starts
    from (real paths, symlinks resolved). A Hub id names no local folder: nothing to check."""
    model_dir = Path(model or "").expanduser()
    if not model or not model_dir.is_dir():
        return
    out, base = Path(output_dir).expanduser().resolve(), model_dir.resolve()
    fix = ("choose another --output-dir (to continue a finished run, pass it as --model and write the new run "
           "to a new --output-dir)")
    if out == base:
        raise TunesuiteError(f"--output-dir {output_dir} is the --model folder: the run would overwrite the model "
                             f"it starts from; {fix}")
    if out.is_relative_to(base):
        raise TunesuiteError(f"--output-dir {output_dir} lies inside the --model folder {model}: the run would "
                             f"write into the model it starts from; {fix}")
    if base.is_relative_to(out):
        raise TunesuiteError(f"--output-dir {output_dir} contains the --model folder {model}: the run would write "
                             f"over the model it starts from; {fix}")


def check_output_contents(output_dir: str, overwrite: bool, resume: str | None) -> None:
    """An output folder is new or empty, or holds a tunesuite run that is continued (--resume-from-checkpoint) or
    replaced (--overwrite-output-dir, which clears only the run's own files: see `clear_earlier_run`).

    Hidden entries (the lock, staging, a VCS folder) do not count."""
    out = Path(output_dir).expanduser()
    if overwrite and resume:
        raise TunesuiteError(f"{OVERWRITE} clears the earlier run that --resume-from-checkpoint {resume} would "
                             "continue; pass only one of them")
    if not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    ours = [name for name in entries if is_run_file(name)]
    foreign = [name for name in entries if not is_run_file(name)]
    if not entries or (resume and ours):  # resume: the one way to go on inside a run's folder
        return
    if foreign:
        if not ours:
            raise TunesuiteError(f"--output-dir {output_dir} is not empty and holds no tunesuite run "
                                 f"({_listed(foreign)}); choose a new or empty --output-dir")
        raise TunesuiteError(f"--output-dir {output_dir} holds files a tunesuite run does not write "
                             f"({_listed(foreign)}) beside an earlier run; {OVERWRITE} clears only a run's own "
                             "files: move them out or choose another --output-dir")
    if overwrite:
        return
    finished = [name for name in FINISHED if name in ours]
    checkpoints = [name for name in ours if fnmatch.fnmatchcase(name, "checkpoint-*")]
    if finished:
        raise TunesuiteError(f"--output-dir {output_dir} holds a finished run ({_listed(finished)}); pass "
                             f"{OVERWRITE} to replace it, or choose another --output-dir")
    if checkpoints:
        raise TunesuiteError(f"--output-dir {output_dir} holds an unfinished run ({_listed(checkpoints)}); pass "
                             f"{RESUME} to continue it, or {OVERWRITE} to start over")
    raise TunesuiteError(f"--output-dir {output_dir} holds files of an earlier run ({_listed(ours)}); pass "
                         f"{OVERWRITE} to replace them, or choose another --output-dir")


def clear_earlier_run(output_dir: str) -> None:
    """--overwrite-output-dir: remove what an earlier run wrote (RUN_FILES, hidden staging and temps included),
    nothing else. Called under the run's lock, so no other run is writing there."""
    out = Path(output_dir)
    if not out.is_dir():
        return
    gone = [p for p in out.iterdir() if p.name != LOCK_NAME and is_run_file(p.name)]
    for path in gone:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if gone:
        log.info("%s: removed the earlier run's files from %s (%s)", OVERWRITE, out,
                 _listed(sorted(p.name for p in gone), most=5))


def check_inputs(cfg: RunConfig) -> None:
    """Refuse what cannot run before anything loads (a local --model is already absolute: the parse made it so)."""
    if not cfg.model.model:
        raise TunesuiteError("--model is required (a Hub id or a local directory)")
    if not cfg.data.dataset:
        raise TunesuiteError("--dataset is required (a Hub dataset name or a local directory/file)")
    check_model_path(cfg.model.model)
    check_task(cfg.task, cfg.model.model)
    check_output_dir(cfg.training.output_dir)
    check_not_model_folder(cfg.training.output_dir, cfg.model.model)
    check_output_contents(cfg.training.output_dir, cfg.run.overwrite_output_dir, cfg.training.resume_from_checkpoint)
    check_training_values(cfg.training)
    if cfg.run.time_budget:
        parse_duration(cfg.run.time_budget)
    args = cfg.training
    if args.max_steps == 0 or (args.max_steps < 0 and args.num_train_epochs <= 0):
        flag = f"--max-steps {args.max_steps}" if args.max_steps >= 0 else f"--num-train-epochs {args.num_train_epochs}"
        raise TunesuiteError(f"{flag}: nothing would train; pass a positive --num-train-epochs or --max-steps")
    if args.learning_rate < 0:  # 0 stays allowed: an untrained baseline through the same path
        raise TunesuiteError(f"--learning-rate {args.learning_rate}: must not be negative (e.g. 5e-5, or leave it "
                             "unset for the mode's default)")


def is_main_process() -> bool:
    """Rank 0 of a multi-process launch (accelerate/torchrun set RANK, some launchers only LOCAL_RANK)."""
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"


class RunLock:
    """An OS advisory lock on OUT/.tunesuite.lock for the whole run: a second run on the same folder is refused.

    The OS drops the lock when the holder dies (even by SIGKILL), so a stale file never blocks a resume.
    Only the main process locks: the other ranks of a multi-process run share its folder.
    """

    def __init__(self, output_dir: str):
        self.out = Path(output_dir)
        self.fd: int | None = None
        self.created = False

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, no guard
            return self
        if not is_main_process():
            return self
        self.created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise TunesuiteError(f"another run is using --output-dir {self.out} (it holds {path}); wait for it "
                                     "to finish or choose another --output-dir") from None
            try:  # the holder before us may have removed the file after we opened it: lock the current one
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self.fd is None:
            return
        (self.out / LOCK_NAME).unlink(missing_ok=True)  # before unlocking: see the inode check above
        os.close(self.fd)
        self.fd = None
        if self.created and error is not None:
            with contextlib.suppress(OSError):  # a run that failed before writing anything leaves no folder
                self.out.rmdir()


def _kept(out: Path) -> str:
    last = latest_complete(out) if out.is_dir() else None
    if last is None:
        return "no checkpoint was saved yet"
    return f"the newest complete checkpoint is {last}"


def interrupted_message(out: Path, command: str) -> str:
    resume = command if RESUME in command else f"{command} {RESUME}"
    return f"interrupted: {_kept(out)}; resume with: {resume}"


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC / EDQUOT, also as the text of a non-OSError (safetensors reports write errors that way)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return any(s in text for s in ("No space left on device", "os error 28", "Disk quota exceeded"))


def is_write_failure(error: BaseException) -> bool:
    """A write that failed for want of room (or a file too large), also as a library reports it: torch's own
    writer raises a RuntimeError without the errno. Not any OSError: a file that cannot be read is another story."""
    if isinstance(error, OSError) and error.errno in (errno.EFBIG, errno.EROFS):
        return True
    return is_disk_full(error) or "PytorchStreamWriter failed writing" in str(error)


def save_failed_message(out: Path, what: str, error: BaseException) -> str:
    """What went wrong while writing, what survived, and how to go on."""
    full = is_disk_full(error)
    reason = "disk full" if full else f"could not write ({_first_line(error)})"
    first = "free some space" if full else "fix that"
    last = latest_complete(out) if out.is_dir() else None
    if last is None:
        kept = "no complete checkpoint exists, so the run must start again"
        fix = f"{first} and rerun with {OVERWRITE} (or choose another --output-dir)"
    else:
        kept = f"the trained weights up to {last.name} are in {last}"
        fix = f"{first} and rerun with {RESUME}"
    return f"{reason} while saving {what} to {out}: {kept}; {fix}"


def finish_failed_message(out: Path, writing: str, complete: list[str], error: BaseException) -> str:
    """A write after the final model was saved failed: what is complete in OUT, and how to get the rest without
    training again."""
    reason = "disk full" if is_disk_full(error) else f"could not write ({_first_line(error)})"
    first = "free some space" if is_disk_full(error) else "fix that"
    done = ", ".join(complete[:-1]) + f" and {complete[-1]}" if len(complete) > 1 else complete[0]
    return (f"{reason} while writing {writing} to {out}: {done} {'are' if len(complete) > 1 else 'is'} complete "
            f"there; {first}, then `tunesuite eval {out}` scores the saved model again without training")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_training_values(args: TrainingArguments) -> None:
    """Refuse TrainingArguments values that crash deep in training (a batch size of 0, a zero division) or that
    the Trainer silently reads as something else (a negative weight decay, --save-steps 0 saving nothing)."""
    steps = "steps"
    rules = [  # (flag, value, wrong, what it must be and the fix)
        ("per_device_train_batch_size", args.per_device_train_batch_size, lambda v: v < 1, "at least 1 (e.g. 16)"),
        ("per_device_eval_batch_size", args.per_device_eval_batch_size, lambda v: v < 1, "at least 1 (e.g. 64)"),
        ("gradient_accumulation_steps", args.gradient_accumulation_steps, lambda v: v < 1,
         "at least 1 (1: no accumulation)"),
        ("eval_accumulation_steps", args.eval_accumulation_steps, lambda v: v is not None and v < 1,
         "at least 1, or leave it unset"),
        ("max_grad_norm", args.max_grad_norm, lambda v: v is not None and v < 0, "0 or more (0: no clipping)"),
        ("weight_decay", args.weight_decay, lambda v: v < 0, "0 or more (e.g. 0.01)"),
        ("adam_beta1", args.adam_beta1, lambda v: not 0 <= v < 1, "in [0, 1) (e.g. 0.9)"),
        ("adam_beta2", args.adam_beta2, lambda v: not 0 <= v < 1, "in [0, 1) (e.g. 0.999)"),
        ("adam_epsilon", args.adam_epsilon, lambda v: v < 0, "0 or more (e.g. 1e-8)"),
        ("label_smoothing_factor", args.label_smoothing_factor, lambda v: not 0 <= v < 1, "in [0, 1) (0: off)"),
        ("dataloader_num_workers", args.dataloader_num_workers, lambda v: v < 0, "0 or more (0: load in the main "
                                                                                 "process)"),
        ("save_total_limit", args.save_total_limit, lambda v: v is not None and v < 1,
         "at least 1 (the Trainer would keep every checkpoint); --save-strategy no saves none"),
        ("seed", args.seed, lambda v: not 0 <= v < 2**32, "in 0 .. 2**32 - 1"),
        ("logging_steps", args.logging_steps, lambda v: args.logging_strategy.value == steps and v <= 0,
         "above 0 with --logging-strategy steps (a count, or a fraction of the run below 1)"),
        ("save_steps", args.save_steps, lambda v: args.save_strategy.value == steps and v <= 0,
         "above 0 with --save-strategy steps (a count, or a fraction of the run below 1); --save-strategy no "
         "saves none"),
        ("eval_steps", args.eval_steps, lambda v: args.eval_strategy.value == steps and v is not None and v < 0,
         "above 0 with --eval-strategy steps (a count, or a fraction of the run below 1)"),
    ]
    for name, value, wrong, must in rules:
        if wrong(value):
            shown = f"{value:g}" if isinstance(value, float) else value  # as typed: -1, not -1.0
            raise TunesuiteError(f"--{name.replace('_', '-')} {shown}: must be {must}")
