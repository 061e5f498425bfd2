"""tunesuite: fine-tune pretrained Hugging Face models in registered modes (full, frozen, bitfit, lora, prompt, ...).

    import tunesuite
    result = tunesuite.finetune(task="text-classification", model="bert-base-uncased",
                                dataset="imdb", mode="lora", output_dir="runs/imdb")
    predictor = tunesuite.load("runs/imdb")
    predictor.predict(["a wonderful film"])
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tunesuite.cli import task_main as main
from tunesuite.errors import RunInterrupted, TunesuiteError

# Cheap imports only: torch, transformers and peft load on first use of a name below (PEP 562), so
# `import tunesuite`, `--help` and `--version` take milliseconds, not seconds.
from tunesuite.publish import export as _export_module  # noqa: F401 (loaded first so the export() below keeps its name)
from tunesuite.registry import DEFAULT_MODE, register_demo, register_mode, register_task
from tunesuite.tasks import get_task

__all__ = ["ASR", "AUDIO_CLASSIFICATION", "IMAGE_CLASSIFICATION", "MODES", "TASKS", "TEXT_CLASSIFICATION", "Predictor",
           "RunInterrupted",
           "TunesuiteError", "compare", "evaluate", "export", "finetune", "get_task", "load", "main", "predict", "push",
           "register_demo", "register_mode", "register_task", "run"]
__version__ = "0.1.0"

_LAZY = {"Predictor": "models.predictor", "load": "models.predictor",
         "ASR": "tasks.asr", "AUDIO_CLASSIFICATION": "tasks.audio_classification",
         "IMAGE_CLASSIFICATION": "tasks.image_classification",
         "TEXT_CLASSIFICATION": "tasks.text_classification"}


def __getattr__(name: str) -> Any:
    if name == "TASKS":
        from tunesuite.tasks import all_tasks

        return all_tasks()
    if name == "MODES":
        from tunesuite.registry import modes

        return modes()
    if name not in _LAZY:
        raise AttributeError(f"module 'tunesuite' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "TASKS", "MODES"})


def finetune(task: str, model: str, dataset: str, mode: str = DEFAULT_MODE, output_dir: str | None = None,
             **flags: Any) -> dict[str, Any]:
    """Fine-tune `model` on `dataset` for `task`: the same path as the command line.

    Any command-line flag can be given as a keyword (`learning_rate=1e-4`, `text_column=["q", "a"]`).
    Returns the metrics (all_results.json) plus `output_dir`. Raises TunesuiteError on bad input.
    """
    from tunesuite.cli import keyword_config
    from tunesuite.train.recipe import finetune_config

    spec = get_task(task)
    options = {"model": model, "dataset": dataset, "mode": mode, "output_dir": output_dir, **flags}
    return finetune_config(spec, keyword_config(spec, options))


def compare(task: str, model: str, dataset: str, modes: list[str] | None = None, budget: str | None = None,
            folds: int | None = None, seeds: int | None = None, output_dir: str | None = None,
            **flags: Any) -> dict[str, Any]:
    """Run each mode (default: full, frozen, lora, prompt, frozen-then-full) on the same splits within `budget`
    ("20m"), repeated over `seeds` or k `folds`; writes compare.md / .json / .png to `output_dir` and returns the
    summary and the verdict (winner, or a tie within the noise). Keywords are flags of every run."""
    from tunesuite.choose.compare import compare as run_comparison

    return run_comparison(task, model, dataset, modes, budget, folds, seeds, output_dir, **flags)


def evaluate(out_dir: str | Path, dataset: str | None = None, **flags: Any) -> dict[str, Any]:
    """Evaluate a finished run, on its own eval/test data or on `dataset`; flags override its run config."""
    from tunesuite.train.evaluate import evaluate_run

    return evaluate_run(out_dir, options={"dataset": dataset, **flags})


def export(out_dir: str | Path, dest: str | Path, format: str | None = None, quantize: str | None = None,
           dataset: str | None = None, max_metric_drop: float = 0.01) -> Path:
    """A plain transformers checkpoint of a finished run in `dest` (LoRA merged into the base weights); with
    format="onnx", the model for onnxruntime (and an int8 copy with quantize="int8"), kept only if it passes the
    gate on the test split (or `dataset`): DEST/deploy_report.json and .md say what it scored and how fast."""
    if format == "onnx":
        from tunesuite.publish.onnx_export import export_onnx

        return export_onnx(out_dir, dest, quantize, dataset, max_metric_drop)
    if format is not None or quantize is not None:
        raise TunesuiteError(f"export format {format!r} with quantize {quantize!r}: use format='onnx' "
                             "(quantize='int8' or None), or neither for a merged checkpoint")
    from tunesuite.publish.export import merge

    return merge(out_dir, dest)


def push(out_dir: str | Path, hub_model_id: str, token: str | None = None, private: bool = False,
         merged: bool = False) -> str:
    """Upload a finished run (adapter or merged model, processor, model card, metrics); returns the URL."""
    from tunesuite.publish.hub import push as push_run

    return push_run(Path(out_dir), hub_model_id, token, private, merged)


def predict(out_dir: str | Path, items: list) -> list[dict[str, Any]]:
    """Predictions of a finished run for raw inputs (texts, or image/audio paths for those tasks)."""
    from tunesuite.models.predictor import load

    return load(out_dir).predict(items)


def run(task: Any, argv: list[str] | None = None) -> dict[str, Any] | None:
    """Command-line entry for a TaskSpec or task name (what tasks/*.py call)."""
    return main(task, argv)
