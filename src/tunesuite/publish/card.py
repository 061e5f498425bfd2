"""The model card (README.md) of a finished run, built with huggingface_hub's ModelCard / ModelCardData: Hub
metadata with `model-index` results, what was trained, how well (per class too), how to repeat and load it.

The model card's loading snippets: complete programs that load the run and predict, with tunesuite and with
transformers (plus peft for adapters). What the run saved decides which: an adapter, our prompts, or a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from tunesuite import registry
from tunesuite.files import write_text_atomic
from tunesuite.models.run_folder import RunFolder
from tunesuite.tasks.metrics import VIEW_CLASSES, weakest_classes

PROCESSOR_PARTS = (("tokenizer", "AutoTokenizer"), ("image_processor", "AutoImageProcessor"),
                   ("feature_extractor", "AutoFeatureExtractor"))


def _path_line(out: Path, repo: str | None) -> str:
    if repo:
        return f"path = snapshot_download({json.dumps(repo)})  # or the run's own folder"
    return f"path = {json.dumps(str(out.resolve()))}  # the run's folder"


def _processor_parts(out: Path) -> list[tuple[str, str]]:
    """The pipeline arguments the saved processor fills: its tokenizer and its image or audio feature side."""
    saved = " ".join(p.read_text() for p in (out / "preprocessor_config.json", out / "processor_config.json")
                     if p.is_file())
    found = {"tokenizer": (out / "tokenizer_config.json").is_file(), "image_processor": "image_processor_type" in saved,
             "feature_extractor": "feature_extractor_type" in saved and "image_processor_type" not in saved}
    return [(arg, cls) for arg, cls in PROCESSOR_PARTS if found[arg]]


def _transformers_snippet(out: Path, task: registry.Task, pipeline_tag: str) -> tuple[str, list[str]] | None:
    """(title, lines after the path line), or None when only tunesuite loads the run (our prompts)."""
    example_import, example = task.data.example
    head = [example_import] if example_import else []
    saved = RunFolder(out)
    if saved.has_prompts or saved.has_scorer:
        return None
    if not saved.has_adapter:
        return ("With transformers", [*head, "from transformers import pipeline", "",
                                      f'pipe = pipeline("{pipeline_tag}", model=path)', f"print(pipe({example}))"])
    from peft import PeftConfig

    adapter = PeftConfig.from_pretrained(str(out))
    parts = _processor_parts(out)
    auto_model = task.model.auto_model  # the speech task's picks CTC or sequence-to-sequence by the checkpoint
    auto = auto_model.name_for(str(out)) if hasattr(auto_model, "name_for") else auto_model.__name__
    imports = ", ".join(sorted({"AutoConfig", auto, *(cls for _, cls in parts)})) + ", pipeline"
    # LoRA merges into the base (a plain model, as fast as the original); prompts stay a PeftModel
    merge = "" if adapter.is_prompt_learning else ".merge_and_unload()"
    processors = "".join(f", {arg}={cls}.from_pretrained(path)" for arg, cls in parts)
    return ("With transformers and peft", [
        *head, "from peft import PeftModel", f"from transformers import {imports}", "",
        f"base_model = {json.dumps(adapter.base_model_name_or_path)}",
        "# the base with this run's config (its labels, its head size); the adapter brings the trained head",
        f"base = {auto}.from_pretrained(base_model, config=AutoConfig.from_pretrained(path), "
        "ignore_mismatched_sizes=True)",
        f"model = PeftModel.from_pretrained(base, path){merge}",
        f'pipe = pipeline("{pipeline_tag}", model=model{processors})', f"print(pipe({example}))"])


def note(out: Path) -> str | None:
    """Why there is no transformers snippet, when there is none."""
    if RunFolder(out).has_prompts:
        return ("The trained prompts are tunesuite modules: transformers alone would load this model without them "
                "(and warn about the `prompt.*` weights), so load it with tunesuite.")
    if RunFolder(out).has_scorer:
        return ("The classes are scored by a tunesuite module on the frozen model (no head was trained): "
                "transformers alone would load it with an untrained head, so load it with tunesuite.")
    return None


def snippets(out: Path, run: dict[str, Any], repo: str | None = None) -> list[tuple[str, str]]:
    """(title, Python code) for each way to load the run in `out` and predict on one example input."""
    task = registry.find_task(str(run["task"]))
    if task is None:
        return []
    example_import, example = task.data.example
    first = ["from huggingface_hub import snapshot_download", ""] if repo else []
    path = _path_line(out, repo)
    ours = [*first, "import tunesuite", *([example_import] if example_import else []), "", path,
            "predictor = tunesuite.load(path)", f"print(predictor.predict([{example}]))"]
    found = [("With tunesuite", "\n".join(ours))]
    plain = _transformers_snippet(out, task, task.name)
    if plain is not None:
        title, lines = plain
        found.append((title, "\n".join([*first, *lines[:lines.index("")], "", path, *lines[lines.index("") + 1:]])))
    return found


LIBRARY = {True: "peft", False: "transformers"}
CURVES = "learning_curves.png"  # written by the report (publish/curves.py); embedded when it is there
SPLITS = ("eval", "test")


def _scores(metrics: dict[str, Any]) -> dict[str, float]:
    """eval_*/test_* quality numbers (not losses, runtimes or throughputs)."""
    return {k: float(v) for k, v in sorted(metrics.items())
            if k.startswith(tuple(f"{s}_" for s in SPLITS)) and isinstance(v, (int, float))
            and not isinstance(v, bool) and not k.endswith(("_runtime", "_per_second", "_loss"))}


def _dataset(run: dict[str, Any]) -> tuple[str, bool]:
    """The dataset's name, and whether it is a Hub id (not a local path)."""
    dataset = str(run.get("dataset") or "")
    on_hub = bool(dataset) and not Path(dataset).exists() and not dataset.startswith((".", "/"))
    return (dataset if on_hub else Path(dataset).name or "local data"), on_hub


def _eval_results(run: dict[str, Any], scores: dict[str, float]) -> list[EvalResult]:
    """model-index entries: one per metric and split (the Hub shows them on the model page)."""
    name, _ = _dataset(run)
    split_names = {"eval": run.get("eval_split", "validation"), "test": run.get("test_split", "test")}
    results = []
    for key, value in scores.items():
        split, metric = key.split("_", 1)
        results.append(EvalResult(task_type=run["task"], dataset_type=name, dataset_name=name,
                                  dataset_config=run.get("dataset_config"), dataset_split=split_names[split],
                                  metric_type=metric, metric_name=metric, metric_value=round(value, 6)))
    return results


def card_data(out: Path, run: dict[str, Any], metrics: dict[str, Any], title: str | None = None) -> ModelCardData:
    adapter = RunFolder(out).has_adapter
    dataset, on_hub = _dataset(run)
    scores = _scores(metrics)
    return ModelCardData(
        library_name=LIBRARY[adapter], pipeline_tag=run["task"], tags=["tunesuite", f"mode-{run['mode']}"],
        base_model=run.get("model"), datasets=[dataset] if on_hub else None,
        metrics=sorted({k.split("_", 1)[1] for k in scores}) or None,
        model_name=run.get("hub_model_id") or title or out.name, eval_results=_eval_results(run, scores) or None)


def _lora_line(run: dict[str, Any]) -> list[str]:
    """The LoRA settings, when the run dict has them."""
    if "lora_r" not in run:
        return []
    targets = run.get("lora_target_modules") or ["the model family's default"]
    extras = [name for key, name in (("use_dora", "DoRA"), ("use_rslora", "rank-stabilised")) if run.get(key)]
    return [f"- LoRA: r={run['lora_r']}, alpha={run.get('lora_alpha')}, dropout={run.get('lora_dropout')}, "
            f"targets {', '.join(targets)}" + "".join(f", {e}" for e in extras)]


def _results(metrics: dict[str, Any]) -> list[str]:
    """One row per metric, one column per split."""
    table: dict[str, dict[str, float]] = {}
    for key, value in _scores(metrics).items():
        split, metric = key.split("_", 1)
        table.setdefault(metric, {})[split] = value
    splits = [s for s in SPLITS if any(s in row for row in table.values())]
    if not table:
        return ["No evaluation was run."]
    cell = lambda row, s: f"{row[s]:.4f}" if s in row else ""  # noqa: E731
    return [f"| metric | {' | '.join(splits)} |", "|---" * (len(splits) + 1) + "|",
            *(f"| {m} | {' | '.join(cell(row, s) for s in splits)} |" for m, row in table.items())]


def _per_class(out: Path) -> list[str]:
    """The per-class table of the test split (else eval), from the {split}_per_class.json the run wrote."""
    for split in reversed(SPLITS):
        path = out / f"{split}_per_class.json"
        if path.is_file():
            report = RunFolder(out).read_json(path.name)
            shown = list(report) if len(report) <= VIEW_CLASSES else weakest_classes(report, VIEW_CLASSES)
            rows = [f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
                    for name, r in ((n, report[n]) for n in shown)]
            note = [] if len(shown) == len(report) else [
                "", f"The {len(shown)} weakest of {len(report):,} classes by F1; every class: {path.name}."]
            return ["", f"Per class ({split} split):", "", "| class | precision | recall | f1 | support |",
                    "|---|---|---|---|---|", *rows, *note]
    return []


def model_card(out: Path, run: dict[str, Any], metrics: dict[str, Any], command: str | None = None,
               title: str | None = None) -> str:
    """README.md text: YAML metadata for the Hub, then what was trained, how well, and how to load it.

    `out` is the folder the card describes (the run, or the merged model staged for upload, titled `title`)."""
    dataset = str(run.get("dataset", ""))
    command = command or "tunesuite train " + run["task"] + " --config run_config.yaml"
    repo = run.get("hub_model_id") if run.get("push_to_hub") else None
    load = [line for title, code in snippets(out, run, repo)
            for line in (f"### {title}", "", "```python", code, "```", "")]
    why = note(out)
    curves = ["", f"![learning curves]({CURVES})"] if (out / CURVES).is_file() else []
    body = [
        f"# {title or out.name}", "",
        f"Fine-tuned with [tunesuite](https://pypi.org/project/tunesuite/) for **{run['task']}**.", "",
        f"- Base model: `{run.get('model')}`",
        f"- Mode: `{run['mode']}` — {metrics.get('trainable_percent', 0):.2f}% of "
        f"{metrics.get('total_params', 0):,} parameters trained ({metrics.get('trainable_params', 0):,})",
        *_lora_line(run),
        f"- Data: `{dataset}` (train split `{run.get('train_split')}`, eval split `{run.get('eval_split')}`)",
        f"- Epochs: {run.get('num_train_epochs')}, learning rate: {run.get('learning_rate')}, seed: {run.get('seed')}",
        *([f"- Chosen by `--mode auto`: {run['auto_choice']}"] if run.get("auto_choice") else []),
        "", "## Results", "", *_results(metrics), *_per_class(out), *curves, "",
        "## Reproduce", "", "```bash", command, "```", "",
        "## Load", "", *load, *([why, ""] if why else [])]
    card = ModelCard(f"---\n{card_data(out, run, metrics, title).to_yaml()}\n---\n\n" + "\n".join(body))
    return str(card)


def write_card(out: Path, run: dict[str, Any], metrics: dict[str, Any], command: str | None = None,
               title: str | None = None) -> None:
    """README.md for the run in `out`, from its run dict (what run_config.yaml holds) and its metrics."""
    write_text_atomic(out / "README.md", model_card(out, run, metrics, command, title))
