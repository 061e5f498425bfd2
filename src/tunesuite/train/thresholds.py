"""--tune-thresholds in a run: per-class thresholds fitted on the eval split before the model is saved (so
config.json carries them), and each evaluated split's F1 at those thresholds beside the 0.5 ones."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tunesuite.config.resolve import RunConfig
from tunesuite.errors import TunesuiteError
from tunesuite.registry import Prepared
from tunesuite.tasks import metrics, thresholds
from tunesuite.tasks.classification import MULTI
from tunesuite.train import operating_point

log = logging.getLogger("tunesuite")


def check(cfg: RunConfig, prepared: Prepared) -> None:
    """Refused in one line before training where there is nothing to tune or nothing to tune on."""
    if not cfg.run.tune_thresholds:
        return
    if prepared.problem_type != MULTI and operating_point.is_binary(prepared):
        return  # one cut on the positive class: train/operating_point.py
    if prepared.problem_type != MULTI:
        kind = f"{prepared.problem_type} with {len(prepared.label_names or [])} classes" if prepared.label_names \
            else prepared.problem_type or f"the {cfg.task} task"
        raise TunesuiteError(f"--tune-thresholds: thresholds need a multi-label or a binary classifier, not {kind}; "
                             "drop --tune-thresholds")
    if prepared.eval is None:
        raise TunesuiteError("--tune-thresholds: no eval split to tune on; give one (--eval-split) or hold part of "
                             "train out (--validation-split-percentage > 0)")


def fit(trainer: Any, cfg: RunConfig, prepared: Prepared) -> list[float] | None:
    """Thresholds tuned on the eval split's probabilities, set on the model config (saved with the model)."""
    if not cfg.run.tune_thresholds or prepared.problem_type != MULTI:
        return None
    scored = getattr(trainer, "scored", None)  # the last epoch's evaluation, when the weights are the same
    output = (scored and scored(prepared.eval)) or trainer.predict(prepared.eval, metric_key_prefix="eval")
    cuts = thresholds.tune(metrics.sigmoid(np.asarray(output.predictions)), np.asarray(output.label_ids))
    setattr(trainer.model.config, thresholds.THRESHOLDS, cuts)
    log.info("thresholds tuned on the eval split: %s", dict(zip(prepared.label_names or [], cuts, strict=False)))
    return cuts


def split_results(output: Any, prepared: Prepared, config: Any, split: str) -> dict[str, float]:
    """`{split}_micro_f1_tuned` and `{split}_macro_f1_tuned`: the split's F1 at the tuned thresholds."""
    if prepared.problem_type != MULTI or not getattr(config, thresholds.THRESHOLDS, None):
        return {}
    probs = metrics.sigmoid(np.asarray(output.predictions))
    predicted = (probs > thresholds.of(config, probs.shape[-1])).astype(int)
    tuned = metrics.multi_label(np.asarray(output.label_ids).astype(int), predicted)
    return {f"{split}_{k}_tuned": v for k, v in tuned.items() if k.endswith("f1")}
