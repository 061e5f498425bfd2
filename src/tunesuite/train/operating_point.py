"""A binary classifier's operating point in a run: the cut on the positive class's probability tuned on the eval
split (--tune-thresholds: highest F1; --target-precision / --target-recall) before the model is saved (so
config.json carries it), and per evaluated split the precision/recall curve with the point marked
({split}_pr_curve.png) and the precision, recall and F1 there. The arithmetic is tasks/operating_point.py's."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tunesuite.config.resolve import RunConfig
from tunesuite.errors import TunesuiteError
from tunesuite.registry import Prepared
from tunesuite.tasks import operating_point as point
from tunesuite.tasks.classification import SINGLE

log = logging.getLogger("tunesuite")


def is_binary(prepared: Prepared) -> bool:
    return prepared.problem_type == SINGLE and len(prepared.label_names or []) == 2


def _target(cfg: RunConfig) -> tuple[str, float] | None:
    given = [(flag, value) for flag, value in (("--target-precision", cfg.run.target_precision),
                                               ("--target-recall", cfg.run.target_recall)) if value is not None]
    if len(given) > 1:
        raise TunesuiteError("--target-precision and --target-recall: give one of them (the other follows from it)")
    return given[0] if given else None


def check(cfg: RunConfig, prepared: Prepared) -> None:
    """Refused in one line before training: a target out of (0, 1], a target on a problem that is not binary,
    no eval split to tune on."""
    target = _target(cfg)
    if target is None and not (cfg.run.tune_thresholds and is_binary(prepared)):
        return
    if target is not None:
        flag, value = target
        if not 0 < value <= 1:
            raise TunesuiteError(f"{flag} {value}: give a fraction in (0, 1], e.g. {flag} 0.9")
        if not is_binary(prepared):
            kind = f"{len(prepared.label_names or [])} classes" if prepared.problem_type == SINGLE else \
                (prepared.problem_type or f"the {cfg.task} task")
            raise TunesuiteError(f"{flag}: an operating point needs a binary classifier (2 classes), not {kind}; "
                                 f"drop {flag}")
    if prepared.eval is None:
        raise TunesuiteError("the operating point is tuned on the eval split and there is none; give one "
                             "(--eval-split) or hold part of train out (--validation-split-percentage > 0)")


def fit(trainer: Any, cfg: RunConfig, prepared: Prepared) -> float | None:
    """The cut tuned on the eval split (after --calibrate's temperature), set on the model config."""
    target = _target(cfg)
    if not is_binary(prepared) or (target is None and not cfg.run.tune_thresholds):
        return None
    scored = getattr(trainer, "scored", None)  # the last epoch's evaluation, when the weights are the same
    output = (scored and scored(prepared.eval)) or trainer.predict(prepared.eval, metric_key_prefix="eval")
    probs = point.positive_probability(output.predictions, trainer.model.config)
    positive = np.asarray(output.label_ids).reshape(-1) == point.POSITIVE
    cut, reached = point.choose(probs, positive, cfg.run.target_precision, cfg.run.target_recall)
    setattr(trainer.model.config, point.THRESHOLD, round(cut, 6))
    at = point.scores_at(probs, positive, cut)
    goal = f"{target[0][2:]} {target[1]:g}" if target else "F1"
    if not reached:
        log.warning("operating point: no cut reaches %s on the eval split; using the closest", goal)
    log.info("operating point for %s (%s): predict %r when its probability > %.4g (eval precision %.3f, recall "
             "%.3f, F1 %.3f)", goal, "reached" if reached else "not reached", prepared.label_names[point.POSITIVE],
             cut, at["precision"], at["recall"], at["f1"])
    return cut


def split_results(output: Any, prepared: Prepared, config: Any, out: Path, split: str) -> dict[str, float]:
    """A binary split's precision/recall curve with its operating point (the tuned one, else 0.5) and, when one
    was tuned, `{split}_threshold`, `{split}_precision_at_threshold`, `..._recall_...`, `..._f1_...`."""
    if not is_binary(prepared):
        return {}
    probs = point.positive_probability(output.predictions, config)
    positive = np.asarray(output.label_ids).reshape(-1) == point.POSITIVE
    cut = point.threshold(config)
    point.save_pr_png(probs, positive, 0.5 if cut is None else cut, str(prepared.label_names[point.POSITIVE]),
                      out / f"{split}_pr_curve.png", f"{split} precision/recall")
    if cut is None:
        return {}
    return {f"{split}_threshold": cut, **{f"{split}_{k}_at_threshold": v
                                          for k, v in point.scores_at(probs, positive, cut).items()}}
