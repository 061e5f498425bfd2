"""`tunesuite eval`: a finished run evaluated on its own or new data, the way a run evaluates after training
(the recipe's evaluate_splits).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from tunesuite import data
from tunesuite.errors import TunesuiteError
from tunesuite.logs import setup_logging
from tunesuite.models.predictor import load
from tunesuite.models.run_folder import CONFIG, RunFolder
from tunesuite.train import outputs

log = logging.getLogger("tunesuite")


def evaluate_run(out_dir: str | Path, argv: list[str] | None = None,
                 options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate the run in `out_dir`; command-line flags (argv) or library keywords (options) override its
    run_config.yaml (e.g. --dataset, --eval-split).

    Results go to OUT/evaluation/ (all_results.json, per-class reports, predictions with --do-predict).
    """
    from tunesuite.config import parse
    from tunesuite.config import resolve as config
    from tunesuite.train import progress
    from tunesuite.train.recipe import build_trainer, evaluate_splits

    setup_logging()
    out = Path(out_dir)
    task = RunFolder(out).task
    parser = parse.build_parser(task, explicit_only=True)
    given = parse.argv_values(parser, argv) if argv else parse.keyword_values(task, options or {})
    values = {**parse.yaml_values(parser, task, out / CONFIG), "output_dir": str(out / "evaluation"),
              "resume_from_checkpoint": None, **given}
    raw = data.load_raw(values["dataset"], values.get("dataset_config"), values.get("cache_dir"))
    if list(raw) == ["train"] and "eval_split" not in given:
        values["eval_split"] = "train"  # one file or folder without splits: evaluate on all of it
        log.info("%s has a single split: evaluating on all of it", values["dataset"])
    cfg = config.resolve(task, values, parse.redact(argv or []))
    predictor = load(out)
    prepared = task.data.preprocess(raw, predictor.processor, cfg)
    _check_same_labels(predictor.model.config, prepared.model_kwargs)
    _check_same_vocabulary(predictor.processor, prepared.processor)
    prepared = dataclasses.replace(prepared, train=None)
    trainer = build_trainer(task, cfg, predictor.model, prepared)
    result_dir = Path(cfg.training.output_dir)
    result_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluate_splits(trainer, task, cfg, prepared, result_dir)
    if trainer.is_world_process_zero():
        outputs.save_results(metrics, result_dir)
        log.info("results: %s", progress.log_line({k: v for k, v in metrics.items() if isinstance(v, float)}))
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


log = logging.getLogger("tunesuite")
