"""--calibrate in a run: the temperature fitted on the eval split before the model is saved (so config.json
carries it), and each evaluated split's ECE after scaling plus its reliability diagram.

The arithmetic is tasks/calibration.py's; this file only ties it to the Trainer and the run folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tunesuite.config.resolve import RunConfig
from tunesuite.errors import TunesuiteError
from tunesuite.registry import Prepared
from tunesuite.tasks import calibration
from tunesuite.tasks.classification import SINGLE

log = logging.getLogger("tunesuite")


def check(cfg: RunConfig, prepared: Prepared) -> None:
    """--calibrate needs single-label classes and an eval split to fit on: refused in one line before training."""
    if not cfg.run.calibrate:
        return
    if prepared.problem_type != SINGLE:
        kind = prepared.problem_type or f"the {cfg.task} task"
        raise TunesuiteError(f"--calibrate: temperature scaling needs a single-label classifier, not {kind}; "
                             "drop --calibrate")
    if prepared.eval is None:
        raise TunesuiteError("--calibrate: no eval split to fit the temperature on; give one (--eval-split) or "
                             "hold part of train out (--validation-split-percentage > 0)")


def fit(trainer: Any, cfg: RunConfig, prepared: Prepared) -> float | None:
    """The temperature fitted on the eval split's logits, set on the model config (saved with the model)."""
    if not cfg.run.calibrate:
        return None
    scored = getattr(trainer, "scored", None)  # the last epoch's evaluation, when the weights are the same
    output = (scored and scored(prepared.eval)) or trainer.predict(prepared.eval, metric_key_prefix="eval")
    temp = calibration.fit_temperature(output.predictions, output.label_ids)
    setattr(trainer.model.config, calibration.TEMPERATURE, round(temp, 6))
    log.info("calibration: temperature %.4g fitted on the eval split (%s rows)", temp, f"{len(output.label_ids):,}")
    return temp


def split_results(output: Any, prepared: Prepared, config: Any, out: Path, split: str) -> dict[str, float]:
    """A single-label split's reliability diagram ({split}_reliability.png) and, when a temperature was
    fitted, `{split}_ece_calibrated`."""
    if prepared.problem_type != SINGLE:
        return {}
    logits, labels = np.asarray(output.predictions), np.asarray(output.label_ids).reshape(-1)
    temp = getattr(config, calibration.TEMPERATURE, None)
    calibration.save_reliability_png(logits, labels, out / f"{split}_reliability.png", f"{split} reliability",
                                     temp)
    if not temp:
        return {}
    after = calibration.expected_calibration_error(logits, labels, temp)
    log.info("%s ECE %.4f -> %.4f after temperature scaling", split, output.metrics.get(f"{split}_ece", float("nan")),
             after)
    return {f"{split}_ece_calibrated": after}
