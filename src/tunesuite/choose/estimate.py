"""`tunesuite estimate TASK [flags]`: build the run, time a few of its real steps, and predict its time per epoch,
total time and peak memory on this machine, before training (--mode auto uses it to fit --time-budget)."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from typing import Any

from tunesuite import registry
from tunesuite.config import resolve as config
from tunesuite.train import timing as estimate
from tunesuite.train.recipe import build

__all__ = ["measure", "measure_values", "report"]


def measure(task: registry.Task, cfg: config.RunConfig) -> dict[str, Any]:
    """The estimate for the run `cfg` describes, from WARMUP + TIMED real training steps in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="tunesuite-estimate-") as scratch:
        probe = dataclasses.replace(cfg.training, max_steps=estimate.WARMUP + estimate.TIMED, eval_strategy="no",
                                    save_strategy="no", logging_strategy="no", load_best_model_at_end=False,
                                    output_dir=scratch, disable_tqdm=True)
        trainer, prepared = build(task, dataclasses.replace(cfg, training=probe))
        trainer.train()
        timing = estimate.callback_of(trainer)
        assert timing is not None and timing.step_s, "the estimate callback timed no steps"
        eval_pass_s = estimate.time_eval_pass(trainer)
    args = cfg.training
    batch = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
    per_epoch = max(math.ceil(len(prepared.train) / batch), 1)
    epochs = args.num_train_epochs if args.max_steps <= 0 else args.max_steps / per_epoch
    steps = args.max_steps if args.max_steps > 0 else math.ceil(epochs * per_epoch)
    start_s = timing.warm - timing.start
    projected = estimate.project(timing.step_s, start_s, steps - estimate.WARMUP, per_epoch,
                                 estimate.eval_passes(args, steps, epochs), eval_pass_s)
    return {**projected, "estimate_peak_memory_mb": timing.estimate["estimate_peak_memory_mb"],
            "estimate_step_s": timing.step_s, "start_s": start_s, "steps": steps, "steps_per_epoch": per_epoch}


def measure_values(task: registry.Task, values: dict[str, Any]) -> dict[str, Any]:
    """measure() for typed flag values (what --mode auto has before the run's config exists)."""
    return measure(task, config.resolve(task, values))


def report(task: registry.Task, cfg: config.RunConfig) -> dict[str, Any]:
    """measure(), printed as the lines `tunesuite estimate` shows."""
    found = measure(task, cfg)
    print(f"estimate for {task.name} --mode {cfg.run.mode} on this machine ({found['steps']} steps, "
          f"{found['steps_per_epoch']} per epoch, {found['estimate_step_s']:.2f} s per step):")
    print(f"  time per epoch  ~{found['estimate_epoch_s']:.0f} s")
    print(f"  total training  ~{found['estimate_train_s']:.0f} s (with the evaluation passes)")
    print(f"  peak memory     ~{found['estimate_peak_memory_mb']:.0f} MiB")
    return found

