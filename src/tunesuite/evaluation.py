"""Evaluate a finished run on (new) data: the same metrics, reports and predictions as at training time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import data
from .errors import TunesuiteError
from .predictor import load
from .publish import outputs
from .runner import parse_args, setup_logging
from .tasks import saved_task

log = logging.getLogger("tunesuite")


def evaluate_run(out_dir: str | Path, argv: list[str] | None = None) -> dict[str, Any]:
    """Evaluate the run in `out_dir`; argv overrides its run_config.yaml (e.g. --dataset, --eval-split).

    Results go to OUT/evaluation/ (all_results.json, per-class reports, predictions with --do-predict).
    """
    from .core.trainer import build_trainer, evaluate_splits

    setup_logging()
    out = Path(out_dir)
    task = saved_task(out)
    cfg = parse_args(task, ["--config", str(out / "run_config.yaml"), "--output-dir", str(out / "evaluation"),
                            *(argv or [])])
    cfg.training.resume_from_checkpoint = None
    predictor = load(out)
    raw = data.load_raw(cfg.data.dataset, cfg.data.dataset_config, cfg.model.cache_dir)
    if list(raw) == ["train"] and not any(a.startswith("--eval-split") for a in argv or []):
        cfg.data.eval_split = "train"  # one file or folder without splits: evaluate on all of it
        log.info("%s has a single split: evaluating on all of it", cfg.data.dataset)
    prepared = task.data.preprocess(raw, predictor.processor, cfg)
    _check_same_labels(predictor.model.config, prepared.model_kwargs)
    _check_same_vocabulary(predictor.processor, prepared.processor)
    prepared.train = None
    trainer = build_trainer(task, cfg, predictor.model, prepared)
    result_dir = Path(cfg.training.output_dir)
    result_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluate_splits(trainer, task, cfg, prepared, result_dir)
    if trainer.is_world_process_zero():
        outputs.save_results(metrics, result_dir)
        log.info("results: %s", {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    return {**metrics, "output_dir": str(result_dir)}


def _check_same_labels(config: Any, model_kwargs: dict[str, Any]) -> None:
    wanted = model_kwargs.get("label2id")
    if wanted and dict(config.label2id) != dict(wanted):
        raise TunesuiteError(f"the data's labels {sorted(wanted)} differ from the model's {sorted(config.label2id)}; "
                             "evaluate on data with the same label set")


def _check_same_vocabulary(model_processor: Any, data_processor: Any) -> None:
    """Speech builds its vocabulary from the data when the model's cannot spell it: not for evaluation."""
    ours, theirs = (getattr(getattr(p, "tokenizer", p), "get_vocab", dict)() for p in (model_processor, data_processor))
    if ours != theirs:
        new = sorted(set(theirs) - set(ours))
        raise TunesuiteError(f"the data holds characters the model never learned ({', '.join(map(repr, new[:5]))}); "
                             "normalise them away (--chars-to-ignore) or evaluate on other data")
