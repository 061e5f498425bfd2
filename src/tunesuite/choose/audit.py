"""`tunesuite audit` / `tunesuite.audit(...)`: which training labels are probably wrong.

Train + validation are cut into K folds (compare's fold machinery, choose/compare/folds.py); a cheap run (frozen
by default) trains on K-1 of them and predicts the one it never saw, so every row gets out-of-fold probabilities;
cleanlab ranks the rows whose label those probabilities do not back (tasks/label_issues.py). Written to OUT:
label_issues.csv (split, row, input, given, suggested, score), audit.json, out_of_fold.npz (the
probabilities, labels and classes), report.html, and fold-I/ (each fold's
run).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tunesuite import data
from tunesuite.choose.compare import folds
from tunesuite.errors import TunesuiteError
from tunesuite.files import atomic_path, write_text_atomic
from tunesuite.tasks import calibration, get_task, label_issues

__all__ = ["audit", "audit_values"]
log = logging.getLogger("tunesuite")
DEFAULT_FOLDS = 5
# What an audit run sets unless the user does: a cheap mode, no checkpoints (each fold keeps its final model), one
# evaluation (the held-out fold, after training) and no duplicate check (the folds split one pool).
AUDIT_DEFAULTS = {"mode": "frozen", "save_strategy": "no", "eval_strategy": "no", "disable_tqdm": True,
                  "skip_duplicate_check": True}
SUMMARY, PROBABILITIES = "audit.json", "out_of_fold.npz"


def _shown(split: Any, columns: list[str]) -> list[str]:
    """What each row shows in label_issues.csv: its text, or its image/audio file (never decoded here)."""
    from datasets import Image as ImageFeature

    from tunesuite.data.audio_columns import undecoded

    split = split.select_columns(columns)
    for column in columns:
        if isinstance(split.features[column], ImageFeature):
            split = split.cast_column(column, ImageFeature(decode=False))
        split = undecoded(split, column)

    def one(value: Any) -> str:
        if isinstance(value, dict):
            return str(value.get("path") or "(bytes)")
        return str(value)

    return [" | ".join(one(row[c]) for c in columns) for row in split]


def _fold_probabilities(task: Any, cfg: Any, run: Path) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """The finished fold run's probabilities on its held-out rows (the fold's validation split, in order):
    (probabilities, the model's class names, the given label ids, the data's class names)."""
    from tunesuite.models.predictor import load
    from tunesuite.train.recipe import build_trainer

    predictor = load(run)
    raw = data.load_raw(cfg.data.dataset, None, cfg.model.cache_dir)
    prepared = task.data.preprocess(raw, predictor.processor, cfg)
    trainer = build_trainer(task, cfg, predictor.model, dataclasses.replace(prepared, train=None, test=None))
    output = trainer.predict(prepared.eval)
    logits, labels = np.asarray(output.predictions), np.asarray(output.label_ids)
    if logits.ndim != 2 or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or not prepared.label_names:
        raise TunesuiteError("audit finds label errors for single-label classification only (one class per row)")
    if len(labels) != len(raw["validation"]):
        raise TunesuiteError(f"audit: {len(raw['validation']) - len(labels)} held-out rows were dropped while "
                             "reading them; fix or remove the unreadable rows first")
    config = predictor.model.config
    model_names = [str(config.id2label[i]) for i in range(logits.shape[1])]
    return calibration.softmax(logits), model_names, labels, list(prepared.label_names)


def audit_values(task_name: str, user: dict[str, Any], folds_k: int | None = None,
                 output_dir: str | None = None) -> dict[str, Any]:
    """The audit for typed flag values `user` (each fold run's flags; --model and --dataset required)."""
    from tunesuite.config import resolve as config
    from tunesuite.logs import setup_logging
    from tunesuite.train.recipe import finetune_config

    setup_logging()
    task = get_task(task_name)
    if not user.get("model") or not user.get("dataset"):
        raise TunesuiteError("audit needs --model and --dataset")
    label_issues.require_cleanlab()  # a missing cleanlab fails now, not after K trainings
    k = DEFAULT_FOLDS if folds_k is None else folds_k
    if k < 2:
        raise TunesuiteError(f"--folds {k}: the audit needs at least 2 folds (default {DEFAULT_FOLDS})")
    user = {**AUDIT_DEFAULTS, **{key: v for key, v in user.items() if v is not None}}
    out = Path(output_dir or f"runs/audit-{task.name}")
    shutil.rmtree(out / "folds", ignore_errors=True)  # an audit never reuses folds made from other data
    out.mkdir(parents=True, exist_ok=True)
    seed = int(user.get("seed", 42))
    raw = data.load_raw(user["dataset"], user.get("dataset_config"), user.get("cache_dir"))
    train, evaluation = user.get("train_split", "train"), user.get("eval_split", "validation")
    parts = [(name, raw[name]) for name in (train, evaluation) if name in raw]
    paths = folds.write_folds(user, out / "folds", k, seed, with_test=False)
    where = [(name, i) for name, split in parts for i in range(len(split))]
    from datasets import concatenate_datasets

    from tunesuite.train.duplicates import input_columns

    pool = concatenate_datasets([split for _, split in parts])
    held_rows = [held for _, held in folds.split_indices(len(pool), k, seed)]
    results: list[tuple[Any, np.ndarray, list[str], np.ndarray, list[str]]] = []
    fold_scores = []
    cfg = None
    for i, (path, held) in enumerate(zip(paths, held_rows, strict=True)):
        log.info("audit: fold %d of %d (%d rows held out)", i + 1, k, len(held))
        options = {**user, "dataset": str(path), "dataset_config": None, "train_split": "train",
                   "eval_split": "validation", "test_split": "test", "output_dir": str(out / f"fold-{i}"),
                   "overwrite_output_dir": True, "push_to_hub": False}
        cfg = config.resolve(task, options)
        metrics = finetune_config(task, cfg)
        fold_scores.append({k2: v for k2, v in metrics.items() if k2.startswith("eval_") and isinstance(v, float)})
        results.append((held, *_fold_probabilities(task, cfg, out / f"fold-{i}")))
    names = list(dict.fromkeys(n for *_, model_names, _, data_names in results for n in [*data_names, *model_names]))
    probs, labels = np.zeros((len(pool), len(names))), np.zeros(len(pool), dtype=np.int64)
    for held, fold_probs, model_names, given, data_names in results:
        columns = [names.index(n) for n in model_names]
        probs[np.ix_(held, columns)] = fold_probs
        labels[held] = [names.index(data_names[g]) for g in given]
    with atomic_path(out / PROBABILITIES) as tmp, open(tmp, "wb") as f:  # for a look of your own: np.load
        np.savez(f, probabilities=probs, labels=labels, classes=np.array(names))
    shown = _shown(pool, input_columns(pool, cfg))
    found = label_issues.issues(probs, labels, names, where, shown)
    csv_path = label_issues.write_csv(found, out / label_issues.FILE)
    summary = {"task": task.name, "model": user["model"], "dataset": user["dataset"], "mode": user["mode"],
               "folds": k, "rows": len(pool), "flagged": len(found), "classes": names,
               "out_of_fold_accuracy": float((probs.argmax(1) == labels).mean()), "fold_metrics": fold_scores}
    write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2))
    from tunesuite.publish.report.label_issues import write_audit_report

    report = write_audit_report(out, summary, found)
    log.warning("audit: %d of %d rows probably mislabelled (out-of-fold accuracy %.3f); listed in %s",
                len(found), len(pool), summary["out_of_fold_accuracy"], csv_path)
    files = [str(csv_path), str(out / SUMMARY), str(out / PROBABILITIES), str(report)]
    return {**summary, "files": files, "output_dir": str(out)}


def audit(task: str, model: str, dataset: str, folds: int | None = None, output_dir: str | None = None,
          **flags: Any) -> dict[str, Any]:
    """Find probably wrong labels in train + validation by K-fold out-of-fold predictions and cleanlab; any
    training flag as a keyword applies to every fold's run (the mode is frozen unless given)."""
    from tunesuite.config.parse import keyword_values

    user = keyword_values(get_task(task), {"model": model, "dataset": dataset, **flags})
    return audit_values(task, user, folds, output_dir)
