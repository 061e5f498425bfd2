"""The shared wrapper: load data and model -> apply the mode -> transformers.Trainer -> evaluate -> save."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

from .. import data
from ..errors import RunInterrupted, TunesuiteError
from ..publish import hub, outputs
from ..registry import MODES, ModeContext, Prepared, Task
from . import feature_cache, run_guard
from .checkpoints import MarkCompleteCallback, is_complete, resume_path
from .config import RunConfig
from .modes import trainable_summary
from .tune_trainer import TuneTrainer

log = logging.getLogger("tunesuite")


def new_modules(missing_keys: list[str]) -> list[str]:
    """Module names whose weights the checkpoint lacked (newly initialised, so they must train)."""
    return sorted({key.rsplit(".", 1)[0] for key in missing_keys})


def reset_relabelled_head(model: torch.nn.Module, task: Any, cfg: RunConfig, id2label: dict | None) -> list[str]:
    """A checkpoint trained on other named classes, as many as ours (so no size mismatch), gets a fresh output
    layer: its rows belong to the old classes. Returns the re-initialised module names."""
    from transformers import AutoConfig

    old = AutoConfig.from_pretrained(cfg.model.model, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir)
    old_names = [str(old.id2label[i]) for i in sorted(old.id2label)]
    new_names = [str(id2label[i]) for i in sorted(id2label)] if id2label else old_names
    if len(old_names) != len(new_names) or old_names == new_names or old_names[0] == "LABEL_0":
        return []  # other sizes were re-initialised on loading; same classes or unnamed ones keep their head
    modules = dict(model.named_modules())
    reset = [name for name, m in modules.items() if isinstance(m, torch.nn.Linear) and m.out_features == len(new_names)
             and any(name == h or name.startswith(h + ".") for h in task.model.head_modules)]
    for name in reset:
        modules[name].reset_parameters()
    log.info("checkpoint classes (%s) differ from the data's (%s): re-initialised %s", _short(old_names),
             _short(new_names), ", ".join(reset))
    return reset


def _short(names: list[str], keep: int = 4) -> str:
    """'a, b, c, d, ... (7 classes)' for long lists; the whole list when short."""
    if len(names) <= keep + 1:
        return ", ".join(names)
    return ", ".join(names[:keep]) + f", ... ({len(names)} classes)"


def load_model(task: Any, cfg: RunConfig, model_kwargs: dict[str, Any]) -> tuple[torch.nn.Module, list[str]]:
    """The pretrained model with a head for this data, and the module names that must train."""
    try:
        model, info = task.model.auto_model.from_pretrained(
            cfg.model.model, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir,
            ignore_mismatched_sizes=True, output_loading_info=True, **model_kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise TunesuiteError(f"could not load model {cfg.model.model!r}: {first}") from None
    except SafetensorError as e:  # a damaged or truncated weights file
        raise TunesuiteError(f"could not read the weights of model {cfg.model.model!r}: "
                             f"{_bad_weights_file(cfg.model.model)} is damaged or truncated ({e}); "
                             "download or save the model again") from None
    fresh = new_modules([*info.get("missing_keys", ()), *(k for k, *_ in info.get("mismatched_keys", ()))])
    fresh = sorted({*fresh, *reset_relabelled_head(model, task, cfg, model_kwargs.get("id2label"))})
    present = {name for name, _ in model.named_modules()}
    head = sorted({h for h in task.model.head_modules if h in present} | set(fresh))
    head = [h for h in head if not any(h.startswith(outer + ".") for outer in head)]  # peft: no nested wrappers
    if fresh:
        log.info("newly initialised (will train in every mode): %s", ", ".join(fresh))
    return model, head


def _bad_weights_file(model: str) -> str:
    """The first unreadable *.safetensors file of a local model folder (else a generic name)."""
    from safetensors import safe_open

    for file in sorted(Path(model).glob("*.safetensors")) if Path(model).is_dir() else ():
        try:
            with safe_open(str(file), "pt"):
                pass
        except (SafetensorError, OSError):
            return str(file)
    return "its weights file"


def _dedupe_modules_to_save(model: torch.nn.Module) -> None:
    """peft appends its own head names (classifier, score) to ours: save each module once, and only those
    the model has, so adapter_config.json lists exactly what trains."""
    names = [name for name, _ in model.named_modules()]
    for config in getattr(model, "peft_config", {}).values():
        if getattr(config, "modules_to_save", None):
            wanted = dict.fromkeys(config.modules_to_save)  # ordered, once each
            config.modules_to_save = [m for m in wanted if any(n.endswith(m) for n in names)]  # as peft matches


def apply_mode(model: torch.nn.Module, task: Task, cfg: RunConfig, head: list[str]) -> torch.nn.Module:
    """The registered mode's apply, then the task's own set-up; logs what trains."""
    mode = MODES[cfg.run.mode]
    ctx = ModeContext(task=task, head=head, args=cfg.mode_args, model_path=cfg.model.model,
                      world_size=cfg.training.world_size)
    model = mode.apply(model, ctx)
    _dedupe_modules_to_save(model)
    if task.model.after_mode is not None:
        model = task.model.after_mode(model, cfg.task_args)
    trainable, total = trainable_summary(model)
    log.info("mode %s: trainable params %s of %s (%.2f%%)", mode.name, f"{trainable:,}", f"{total:,}",
             100 * trainable / total)
    return model


def trainer_arguments(cfg: RunConfig) -> TrainingArguments:
    """The run's TrainingArguments as the Trainer gets them: we push once ourselves (with a card), and a mode
    whose first layer's inputs carry no grad needs non-reentrant checkpointing (else adapters get none)."""
    changes: dict[str, Any] = {"push_to_hub": False, "hub_token": None}
    if cfg.training.gradient_checkpointing and MODES[cfg.run.mode].frozen_inputs:
        changes["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    return dataclasses.replace(cfg.training, **changes)


def build_trainer(task: Task, cfg: RunConfig, model: torch.nn.Module, prepared: Prepared) -> TuneTrainer:
    mode = MODES[cfg.run.mode]
    callbacks: list[TrainerCallback] = [MarkCompleteCallback()]
    if cfg.run.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(cfg.run.early_stopping_patience))
    if mode.callbacks is not None:
        callbacks += mode.callbacks(cfg.mode_args)
    if prepared.eval is None and cfg.training.eval_strategy.value != "no":
        raise TunesuiteError("no eval split: pass --eval-strategy no or --validation-split-percentage > 0")
    trainer = TuneTrainer(
        model=model, args=trainer_arguments(cfg), train_dataset=prepared.train, eval_dataset=prepared.eval,
        data_collator=task.data.collator(prepared.processor), processing_class=prepared.processor,
        compute_metrics=task.results.compute_metrics(prepared),
        preprocess_logits_for_metrics=task.results.preprocess_logits,
        callbacks=callbacks)
    trainer.unfreeze_later = any(getattr(c, "needs_frozen_in_optimizer", False) for c in callbacks)
    return trainer


def _check_inputs(cfg: RunConfig) -> None:
    if not cfg.model.model:
        raise TunesuiteError("--model is required (a Hub id or a local directory)")
    if not cfg.data.dataset:
        raise TunesuiteError("--dataset is required (a Hub dataset name or a local directory/file)")
    run_guard.check_model_path(cfg.model.model)
    model = Path(cfg.model.model).expanduser()
    if model.is_dir():  # absolute, so adapters saved later find their base from anywhere
        cfg.model.model = str(model.resolve())
    run_guard.check_output_dir(cfg.training.output_dir)
    args = cfg.training
    if args.max_steps == 0 or (args.max_steps < 0 and args.num_train_epochs <= 0):
        flag = f"--max-steps {args.max_steps}" if args.max_steps >= 0 else f"--num-train-epochs {args.num_train_epochs}"
        raise TunesuiteError(f"{flag}: nothing would train; pass a positive --num-train-epochs or --max-steps")
    if args.learning_rate < 0:  # 0 stays allowed: an untrained baseline through the same path
        raise TunesuiteError(f"--learning-rate {args.learning_rate}: must not be negative (e.g. 5e-5, or leave it "
                             "unset for the mode's default)")


def _hub_before_training(cfg: RunConfig, token: str | None) -> str | None:
    """The repo we push to once the run is done (the Trainer does not push: see trainer_arguments); access is
    checked up front, so a bad token fails in seconds."""
    args = cfg.training
    if not args.push_to_hub:
        return None
    repo = args.hub_model_id or Path(args.output_dir).name
    if not cfg.hub.hub_dry_run and args.process_index == 0:
        hub.check_access(repo, token, cfg.hub.hub_private or args.hub_private_repo)
    return repo


def build(task: Any, cfg: RunConfig) -> tuple[TuneTrainer, Any]:
    """Data -> processor -> preprocessed splits -> model with its mode applied -> Trainer, ready to train.

    Returns the Trainer and the task's prepared data. The benchmark builds its runs through this too."""
    set_seed(cfg.training.seed)
    raw = data.load_raw(cfg.data.dataset, cfg.data.dataset_config, cfg.model.cache_dir)
    processor = task.data.load_processor(cfg.model.model, cfg)
    prepared = task.data.preprocess(raw, processor, cfg)
    set_seed(cfg.training.seed)  # again: data loading may or may not draw random numbers (cache hits)
    model, head = load_model(task, cfg, prepared.model_kwargs)
    model = apply_mode(model, task, cfg, head)
    return build_trainer(task, cfg, model, prepared), prepared


def finetune_config(task: Any, cfg: RunConfig) -> dict[str, Any]:
    """Run one fine-tuning job described by `cfg`; returns all metrics (also saved to all_results.json).

    Raises TunesuiteError on bad input, RunInterrupted on Ctrl-C (saying what was saved and how to resume)."""
    _check_inputs(cfg)
    token = cfg.hub_token  # never in cfg.training: the Trainer pickles that into OUT (training_args.bin)
    repo = _hub_before_training(cfg, token)
    out = Path(cfg.training.output_dir)
    with run_guard.RunLock(cfg.training.output_dir):
        try:
            return _run(task, cfg, repo, token, out)
        except KeyboardInterrupt:
            command = hub.command_line(task.name, cfg.command)
            raise RunInterrupted(run_guard.interrupted_message(out, command)) from None


def _run(task: Any, cfg: RunConfig, repo: str | None, token: str | None, out: Path) -> dict[str, Any]:
    trainer, prepared = build(task, cfg)

    trainable, total = trainable_summary(trainer.model)
    metrics: dict[str, Any] = {"trainable_params": trainable, "total_params": total,
                               "trainable_percent": 100 * trainable / total}
    if prepared.train is not None:
        metrics.update(_train(trainer, task, cfg, prepared))
    outputs.save_model(trainer, cfg, prepared, out)
    metrics.update(evaluate_splits(trainer, task, cfg, prepared, out))
    if trainer.is_world_process_zero():
        outputs.save_results(metrics, out)
        hub.write_card(out, metrics, hub.command_line(task.name, cfg.command))
        log.info("results: %s", {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
        if cfg.hub.hub_dry_run:
            hub.stage_upload(out, out / "hub_upload", cfg.hub.push_merged)
            log.info("hub dry run: what would be uploaded is in %s", out / "hub_upload")
        elif repo:
            url = hub.push(out, repo, token, cfg.hub.hub_private, cfg.hub.push_merged)
            log.info("pushed to %s", url)
    return {**metrics, "output_dir": str(out)}


def _train(trainer: Trainer, task: Any, cfg: RunConfig, prepared: Any) -> dict[str, Any]:
    if MODES[cfg.run.mode].feature_cache is not None:
        reason = feature_cache.why_not(task, cfg, prepared)
        if reason is None:
            return feature_cache.train_head(trainer, task, cfg, prepared)
        log.info("feature cache off: %s", reason)
    resume = resume_path(cfg.training.resume_from_checkpoint, cfg.training.output_dir)
    try:
        return trainer.train(resume_from_checkpoint=resume).metrics
    except Exception as e:  # a checkpoint write that ran out of space: say what is left, drop the torn folder
        if not run_guard.is_disk_full(e):
            raise
        out, torn = Path(cfg.training.output_dir), f"checkpoint-{trainer.state.global_step}"
        if (out / torn).is_dir() and not is_complete(out / torn):
            shutil.rmtree(out / torn, ignore_errors=True)
        raise TunesuiteError(run_guard.save_failed_message(out, torn, e)) from None


def evaluate_splits(trainer: Trainer, task: Any, cfg: RunConfig, prepared: Any, out: Path) -> dict[str, Any]:
    """eval_* and test_* metrics (gathered over all processes), reports and predictions from rank 0."""
    metrics: dict[str, Any] = {}
    main = trainer.is_world_process_zero()
    for split, dataset in (("eval", prepared.eval), ("test", prepared.test)):
        if dataset is None:
            continue
        output = trainer.predict(dataset, metric_key_prefix=split)
        metrics.update(output.metrics)
        if main and task.results.write_reports is not None:
            table = task.results.write_reports(output, prepared, out, split)
            if table:
                log.info("%s per-class report:\n%s", split, table)
        if main and cfg.training.do_predict and (split == "test" or prepared.test is None):
            outputs.write_predictions(task, prepared, trainer.model.config, output, out / "predictions.jsonl", split)
    return metrics
