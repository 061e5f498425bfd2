"""The shared wrapper: load data and model -> apply the mode -> transformers.Trainer -> evaluate -> save."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

from tunesuite import data, logs
from tunesuite.config import precision, settings
from tunesuite.config.resolve import RunConfig
from tunesuite.data import streaming
from tunesuite.errors import RunInterrupted, TunesuiteError
from tunesuite.models.finished_run import CONTINUED, load_model
from tunesuite.models.pretrained import dedupe_modules_to_save
from tunesuite.modes import label_scorer, trainable_summary
from tunesuite.publish import card, hub, report
from tunesuite.publish.report.curves import CurvesCallback
from tunesuite.registry import MODES, ModeContext, Prepared, Task
from tunesuite.train import calibrate, duplicates, extra_metrics, feature_cache, guard, outputs, progress, timing
from tunesuite.train import operating_point as binary_point
from tunesuite.train import thresholds as class_thresholds
from tunesuite.train.checkpoints import MarkCompleteCallback, guard_resume, is_complete, resume_path
from tunesuite.train.interrupt import stop_between_steps
from tunesuite.train.near_duplicates import check_run as check_near_duplicates
from tunesuite.train.trainer import CLASS_WEIGHTS, TuneTrainer

__all__ = ["apply_mode", "build", "build_trainer", "evaluate_splits", "finetune_config", "load_model",
           "trainer_arguments"]
log = logging.getLogger("tunesuite")


def apply_mode(model: torch.nn.Module, task: Task, cfg: RunConfig, head: list[str]) -> torch.nn.Module:
    """The registered mode's apply, then the task's own set-up; logs what trains."""
    mode = MODES[cfg.run.mode]
    ctx = ModeContext(task=task, head=head, args=cfg.mode_args, model_path=cfg.model.model,
                      world_size=cfg.training.world_size, continued=getattr(model, CONTINUED, False))
    model = mode.apply(model, ctx)
    dedupe_modules_to_save(model)
    if task.model.after_mode is not None:
        model = task.model.after_mode(model, cfg.task_args)
    trainable, total = trainable_summary(model)
    log.info("mode %s: trainable params %s of %s (%.2f%%)", mode.name, f"{trainable:,}", f"{total:,}",
             100 * trainable / total)
    return model


def trainer_arguments(cfg: RunConfig) -> TrainingArguments:
    """The run's TrainingArguments as the Trainer gets them (a copy; cfg.training is left as parsed): we push
    once ourselves (with a card), and a mode whose first layer's inputs carry no grad needs non-reentrant
    checkpointing (else adapters get none)."""
    changes: dict[str, Any] = {"push_to_hub": False, "hub_token": None}
    if cfg.training.gradient_checkpointing and MODES[cfg.run.mode].frozen_inputs:
        changes["gradient_checkpointing_kwargs"] = {**(cfg.training.gradient_checkpointing_kwargs or {}),
                                                    "use_reentrant": False}
    return dataclasses.replace(cfg.training, **changes)


def build_trainer(task: Task, cfg: RunConfig, model: torch.nn.Module, prepared: Prepared) -> TuneTrainer:
    """The Trainer for this run: our callbacks (checkpoint marks, early stopping, the mode's own)."""
    mode = MODES[cfg.run.mode]
    callbacks: list[TrainerCallback] = [MarkCompleteCallback(), CurvesCallback(),
                                        timing.EstimateCallback(cfg.run.time_budget)]
    if cfg.run.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(cfg.run.early_stopping_patience))
    if mode.callbacks is not None:
        callbacks += mode.callbacks(cfg.mode_args)
    if prepared.eval is None and cfg.training.eval_strategy.value != "no":
        raise TunesuiteError("no eval split: pass --eval-strategy no or --validation-split-percentage > 0")
    trainer = TuneTrainer(
        model=model, args=trainer_arguments(cfg), train_dataset=prepared.train, eval_dataset=prepared.eval,
        data_collator=task.data.collator(prepared.processor), processing_class=prepared.processor,
        compute_metrics=extra_metrics.with_extra(task, prepared, cfg.run.metric),
        preprocess_logits_for_metrics=task.results.preprocess_logits,
        callbacks=callbacks)
    progress.use_our_progress(trainer)
    precision.log_precision(trainer.args)
    trainer.unfreeze_later = any(getattr(c, "needs_frozen_in_optimizer", False) for c in callbacks)
    timing.attach(trainer)
    return trainer


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


def build(task: Task, cfg: RunConfig) -> tuple[TuneTrainer, Prepared]:
    """Data -> processor -> preprocessed splits -> model with its mode applied -> Trainer, ready to train.

    Returns the Trainer and the task's prepared data. The benchmark builds its runs through this too."""
    extra_metrics.check(task, cfg.run.metric)  # a bad --metric fails before any data is read
    settings.log_settings(settings.run_settings(cfg))  # the log's first lines: what this run really uses
    set_seed(cfg.training.seed)
    streaming.check(cfg)
    raw = None if cfg.data.streaming else data.load_raw(cfg.data.dataset, cfg.data.dataset_config, cfg.model.cache_dir)
    processor = task.data.load_processor(cfg.model.model, cfg)
    prepared = streaming.prepare(task, cfg, processor) if raw is None else task.data.preprocess(raw, processor, cfg)
    exact = None
    if cfg.data.skip_duplicate_check:
        log.info("duplicates across splits: not checked (--skip-duplicate-check)")
    elif raw is not None and prepared.problem_type is not None and guard.is_main_process():
        exact = duplicates.check(raw, cfg, Path(cfg.training.output_dir))  # leakage across splits: warned, listed
    set_seed(cfg.training.seed)  # again: data loading may or may not draw random numbers (cache hits)
    attention = precision.attention_kwargs(cfg.model.attn_implementation, cfg.training, cfg.model.model)
    model, head = load_model(task, cfg, {**prepared.model_kwargs, **attention})
    if exact is not None:  # and nearly the same rows: by text, image hash and the loaded model's embeddings
        check_near_duplicates(raw, cfg, Path(cfg.training.output_dir), exact, model, prepared.processor)
    use_class_weights(model, cfg, prepared)
    model = apply_mode(model, task, cfg, head)
    return build_trainer(task, cfg, model, prepared), prepared


def use_class_weights(model: torch.nn.Module, cfg: RunConfig, prepared: Prepared) -> None:
    """--class-weights: the task resolved them (Prepared.class_weights); into the model config they go, where the
    loss reads them and config.json records them."""
    if cfg.data.class_weights and prepared.class_weights is None:
        raise TunesuiteError(f"--class-weights: the {cfg.task} task has no classes to weigh")
    if prepared.class_weights is not None:
        setattr(model.config, CLASS_WEIGHTS, [round(w, 6) for w in prepared.class_weights])
        log.info("class weights in the loss: %s", dict(zip(prepared.label_names or [], prepared.class_weights,
                                                          strict=False)))


def finetune_config(task: Task, cfg: RunConfig) -> dict[str, Any]:
    """Run one fine-tuning job described by `cfg`; returns all metrics (also saved to all_results.json).

    Raises TunesuiteError on bad input, RunInterrupted on Ctrl-C (saying what was saved and how to resume)."""
    logs.setup_logging()
    guard.check_inputs(cfg)
    report.check_report_to(cfg.training.report_to)
    token = cfg.hub_token  # never in cfg.training: the Trainer pickles that into OUT (training_args.bin)
    repo = _hub_before_training(cfg, token)
    out = Path(cfg.training.output_dir)
    logs.plain_library_logs()
    with guard.RunLock(cfg.training.output_dir), logs.quiet_weight_bars():
        if cfg.run.overwrite_output_dir and guard.is_main_process():  # under the lock: no other run writes there
            guard.clear_earlier_run(cfg.training.output_dir)
        try:
            return _run(task, cfg, repo, token, out)
        except KeyboardInterrupt:
            command = hub.command_line(task.name, cfg.command)
            raise RunInterrupted(guard.interrupted_message(out, command)) from None


def _run(task: Task, cfg: RunConfig, repo: str | None, token: str | None, out: Path) -> dict[str, Any]:
    trainer, prepared = build(task, cfg)
    calibrate.check(cfg, prepared)
    class_thresholds.check(cfg, prepared)
    binary_point.check(cfg, prepared)
    trainable, total = trainable_summary(trainer.model)
    metrics: dict[str, Any] = {"trainable_params": trainable, "total_params": total,
                               "trainable_percent": 100 * trainable / total}
    if MODES[cfg.run.mode].trains_nothing is not None:
        metrics.update(_set_up_untrained(trainer, cfg, prepared))
    elif MODES[cfg.run.mode].fits is not None:
        metrics.update(_fit_own_way(trainer, cfg, prepared))
    elif prepared.train is not None:
        metrics.update(_train(trainer, task, cfg, prepared))
        metrics.update(timing.results(trainer))
    calibrate.fit(trainer, cfg, prepared)  # --calibrate: the temperature goes into the saved config
    class_thresholds.fit(trainer, cfg, prepared)  # --tune-thresholds: so do the per-class thresholds
    binary_point.fit(trainer, cfg, prepared)  # and a binary classifier's operating point
    outputs.save_model(trainer, cfg, prepared, out)
    metrics = _finish(trainer, task, cfg, prepared, out, metrics)
    if repo and not cfg.hub.hub_dry_run and trainer.is_world_process_zero():
        url = hub.push(out, repo, token, cfg.hub.hub_private, cfg.hub.push_merged)
        log.info("pushed to %s", url)
    return {**metrics, "output_dir": str(out)}


def _finish(trainer: TuneTrainer, task: Task, cfg: RunConfig, prepared: Prepared, out: Path,
            metrics: dict[str, Any]) -> dict[str, Any]:
    """After the final model is saved: evaluation, results, report, card (rank 0 writes). The model is safe in OUT
    by now, so a failed write ends the run with one line saying so and what else is complete."""
    complete, writing = ["the final model"], "the evaluation results"
    try:
        metrics = {**metrics, **evaluate_splits(trainer, task, cfg, prepared, out)}
        if trainer.is_world_process_zero():
            writing = "all_results.json"
            outputs.save_results(metrics, out)
            complete.append(writing)
            command = hub.command_line(task.name, cfg.command)
            writing = "the report (report.html)"
            if report.write_run_report(trainer, cfg, prepared, out, command):  # first: the card embeds its curves
                complete.append("report.html")
            writing = "the model card (README.md)"
            card.write_card(out, cfg.saved, metrics, command)
            log.info("results: %s", progress.log_line({k: v for k, v in metrics.items() if isinstance(v, float)}))
            if cfg.hub.hub_dry_run:
                writing = "the hub dry run (hub_upload/)"
                hub.stage_upload(out, out / "hub_upload", cfg.hub.push_merged)
                log.info("hub dry run: what would be uploaded is in %s", out / "hub_upload")
    except Exception as e:
        if not (isinstance(e, OSError) or guard.is_write_failure(e)):
            raise
        raise TunesuiteError(guard.finish_failed_message(out, writing, complete, e)) from None
    return metrics


def evaluate_splits(trainer: Trainer, task: Task, cfg: RunConfig, prepared: Prepared, out: Path) -> dict[str, Any]:
    """eval_* and test_* metrics (gathered over all processes), reports and predictions from rank 0."""
    metrics: dict[str, Any] = {}
    main = trainer.is_world_process_zero()
    for split, dataset in (("eval", prepared.eval), ("test", prepared.test)):
        if dataset is None:
            continue
        scored = getattr(trainer, "scored", None)  # the last epoch's evaluation, when the weights are the same
        output = (scored and scored(dataset)) or trainer.predict(dataset, metric_key_prefix=split)
        metrics.update(output.metrics)
        if main:
            metrics.update(calibrate.split_results(output, prepared, trainer.model.config, out, split))
            metrics.update(class_thresholds.split_results(output, prepared, trainer.model.config, split))
            metrics.update(binary_point.split_results(output, prepared, trainer.model.config, out, split))
        if main and task.results.write_reports is not None:
            table = task.results.write_reports(output, prepared, out, split)
            if table:
                log.info("%s per-class report:\n%s", split, table)
        if main:
            report.write_mistakes(task, output, prepared, out, split)
        if main and cfg.training.do_predict and (split == "test" or prepared.test is None):
            outputs.write_predictions(task, prepared, trainer.model.config, output, out / "predictions.jsonl", split)
    return metrics


def _set_up_untrained(trainer: TuneTrainer, cfg: RunConfig, prepared: Prepared) -> dict[str, Any]:
    """A mode that trains nothing sets up its scorer from the data: no optimizer step; the weights are hashed
    before and after, and must not have changed."""
    before, start = label_scorer.weights_hash(trainer.model), time.perf_counter()
    found = MODES[cfg.run.mode].trains_nothing(trainer.model, prepared, cfg.mode_args, cfg.training.seed)
    if label_scorer.weights_hash(trainer.model) != before:
        raise RuntimeError(f"--mode {cfg.run.mode} changed the model's weights; it must train nothing")
    return {**found, "setup_runtime": time.perf_counter() - start, "weights_sha256": before}


def _fit_own_way(trainer: TuneTrainer, cfg: RunConfig, prepared: Prepared) -> dict[str, Any]:
    """A mode that trains through its own library (setfit) in place of the Trainer: the weights change, so the
    hashes before and after are recorded, not required equal."""
    before, start = label_scorer.weights_hash(trainer.model), time.perf_counter()
    found = MODES[cfg.run.mode].fits(trainer.model, prepared, cfg.mode_args, cfg.training.seed)
    return {**found, "train_runtime": time.perf_counter() - start, "weights_sha256_before": before,
            "weights_sha256": label_scorer.weights_hash(trainer.model)}


def _train(trainer: TuneTrainer, task: Task, cfg: RunConfig, prepared: Prepared) -> dict[str, Any]:
    if MODES[cfg.run.mode].feature_cache is not None:
        reason = feature_cache.why_not(task, cfg, prepared, trainer.model)
        if reason is None:
            try:
                return feature_cache.train_head(trainer, task, cfg, prepared)
            except feature_cache.Unchained as e:
                reason = f"the model's head cannot be replayed on cached features ({e})"
        log.info("feature cache off: %s", reason)
    resume = resume_path(cfg.training.resume_from_checkpoint, cfg.training.output_dir)
    guard_resume(trainer, cfg, prepared.label_names, resume)  # records this run in its checkpoints
    try:
        with stop_between_steps(trainer, cfg.training.world_size):
            return trainer.train(resume_from_checkpoint=resume).metrics
    except Exception as e:  # a checkpoint write that ran out of space: say what is left, drop the torn folder
        if not guard.is_write_failure(e):
            raise
        out, torn = Path(cfg.training.output_dir), f"checkpoint-{trainer.state.global_step}"
        if (out / torn).is_dir() and not is_complete(out / torn):
            shutil.rmtree(out / torn, ignore_errors=True)
        raise TunesuiteError(guard.save_failed_message(out, torn, e)) from None
