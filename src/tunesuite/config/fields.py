"""The flags every run has (model, data, mode, Hub), our TrainingArguments defaults, and the RunConfig a run
is described by. Frozen: once parsed, nothing changes them (what a run derives travels explicitly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunesuite import registry

if TYPE_CHECKING:
    from transformers import TrainingArguments


@dataclass(frozen=True)
class ModelArgs:
    model: str | None = field(default=None, metadata={"help": "Hub model id or local directory to fine-tune."})
    revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit) of --model."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloaded models/datasets."})
    attn_implementation: str = field(
        default="auto", metadata={"help": "Attention kernels (transformers' attn_implementation: eager, sdpa, ...). "
                                          "auto: eager for bf16 training on a CPU, where it is faster than sdpa; "
                                          "else the library's default."})


@dataclass(frozen=True)
class DataArgs:
    dataset: str | None = field(
        default=None,
        metadata={"help": "Hub dataset name, or a local directory / .csv / .tsv / .json / .jsonl / .parquet file."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str = field(
        default="validation",
        metadata={"help": "Split to evaluate on; carved from train when it does not exist."},
    )
    test_split: str = field(default="test", metadata={"help": "Split for final test metrics, when present."})
    validation_split_percentage: int = field(
        default=10, metadata={"help": "Percent of train held out for evaluation when there is no eval split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep at most N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep at most N eval/test rows."})
    label_column: str = field(default="label", metadata={"help": "Column holding the target."})
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "Override the problem type inferred from the labels.",
            "choices": ["single_label_classification", "multi_label_classification", "regression"],
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for the pass over the data before training (tokenizing, checking "
                                        "images, decoding audio); its result is cached for the next run."})
    streaming: bool = field(
        default=False, metadata={"help": "Read the training split as a stream (datasets IterableDataset), decoded on "
                                         "the fly in the dataloader workers; needs --max-steps."})
    streaming_sample: int = field(
        default=1000, metadata={"help": "--streaming: rows read up front; label names / vocabulary come from the "
                                        "first N training rows, evaluation uses N rows (or --max-eval-samples)."})
    shuffle_buffer_size: int = field(
        default=10000, metadata={"help": "--streaming: rows held in the shuffle buffer (0: stream order)."})
    class_weights: list[str] | None = field(
        default=None,
        metadata={"help": "Classifiers: weigh each class in the loss: auto (inverse frequency in the training "
                          "split) or one number per class in label order (--class-weights 1 3 1)."},
    )
    skip_duplicate_check: bool = field(
        default=False, metadata={"help": "Skip the check for exact and near-duplicate rows across train/eval/test "
                                         "(it reads and decodes every input once more)."})
    near_duplicate_similarity: float | None = field(
        default=None, metadata={"help": "Text runs: also list eval/test rows whose embedding (the loaded model's "
                                        "mean-pooled encoder output before training, centred) has at least this "
                                        "cosine similarity with an earlier split's row as near-duplicates (0.95 "
                                        "suits sentence encoders); off by default: it runs the model over up to "
                                        "1,000 rows per split."})


@dataclass(frozen=True)
class RunArgs:
    mode: str = field(default=registry.DEFAULT_MODE, metadata={"help": "What trains (see the modes below)."})
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after N evaluations without improvement; keeps the best model."}
    )
    metric: list[str] | None = field(
        default=None,
        metadata={"help": "Also report this `evaluate` metric (a Hub name such as f1, or a local metric script "
                          "folder) on predictions vs references: class ids, or transcripts for speech. Repeatable.",
                  "action": "extend"},
    )
    precision: str = field(
        default="auto", metadata={"help": "Training precision. auto: bf16 where the CPU or GPU runs it natively and "
                                          "the mode keeps accuracy in it on this model, else fp32 (the first log lines "
                                          "say which and why). --bf16 / --fp16 still work.",
                                  "choices": ["auto", "fp32", "bf16", "fp16"]})
    time_budget: str | None = field(
        default=None, metadata={"help": "Stop training after this long (90s, 20m, 1.5h); --mode auto fits it."})
    auto_choice: str | None = field(default=None, metadata={"help": "Set by --mode auto: what it chose and why."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the run already in --output-dir: its own files are removed first "
                                         "(never others). Without it a folder holding a run is refused."})
    calibrate: bool = field(
        default=False, metadata={"help": "Single-label classifiers: fit temperature scaling on the eval split's "
                                         "logits; stored in config.json and used by predict (ECE before and after)."})
    tune_thresholds: bool = field(
        default=False, metadata={"help": "Multi-label classifiers: one decision threshold per class, tuned on the eval "
                                         "split for that class's F1; stored in config.json and used by predict."})
    target_precision: float | None = field(
        default=None, metadata={"help": "Binary classifiers: the operating point tuned on eval is the cut of highest "
                                        "recall at this precision (--tune-thresholds alone: highest F1); stored and "
                                        "used by predict."})
    target_recall: float | None = field(
        default=None, metadata={"help": "Binary classifiers: the cut of highest precision at this recall (on eval)."})


@dataclass(frozen=True)
class HubArgs:
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    push_merged: bool = field(
        default=False, metadata={"help": "LoRA: push the adapter merged into the base (a plain checkpoint)."}
    )
    hub_dry_run: bool = field(
        default=False, metadata={"help": "Write what --push-to-hub would upload into OUT/hub_upload/, no network."}
    )


# TrainingArguments defaults that suit fine-tuning better than the library's generic ones.
COMMON_TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 10,
    # none (transformers' own default too): `all` would start any tracker that happens to be installed (wandb,
    # mlflow, ...), some asking for a login, unasked. Every run draws OUT/learning_curves.png and OUT/report.html;
    # --report-to tensorboard (the tensorboard extra) shows the curves live, offline; others pass through untouched.
    "report_to": "none",
    "num_train_epochs": 3,
    # Our tasks' losses are per-example means that ignore num_items_in_batch; averaging "tokens" across
    # devices would multiply them by the number of processes under DDP.
    "average_tokens_across_devices": False,
    # Every trainable parameter is used in each forward pass in all four modes: skip DDP's extra graph walk.
    "ddp_find_unused_parameters": False,
}


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs. `saved` is what run_config.yaml holds (enough to repeat the run)."""

    task: str
    model: ModelArgs
    data: DataArgs
    run: RunArgs
    mode_args: Any  # the chosen mode's own dataclass (registry Mode.args), or None
    training: TrainingArguments
    hub: HubArgs
    task_args: Any  # the task's own dataclass (Task.data.args), or None
    saved: dict[str, Any]
    command: list[str] = field(default_factory=list)  # the run as flags, secrets redacted (for the card)
    hub_token: str | None = None  # never in `training` (the Trainer pickles it) nor in `saved`
    precision: str = ""  # what the run trains in and why (config.precision decided it), e.g. "bf16 (auto: ...)"
