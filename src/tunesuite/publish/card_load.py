"""The model card's loading snippets: complete programs that load the run and predict, with tunesuite and with
transformers (plus peft for adapters). What the run saved decides which: an adapter, our prompts, or a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import registry
from ..core.prompts import CONFIG_KEY

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


def _has_our_prompts(out: Path) -> bool:
    config = out / "config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get(CONFIG_KEY))


def _transformers_snippet(out: Path, task: registry.Task, pipeline_tag: str) -> tuple[str, list[str]] | None:
    """(title, lines after the path line), or None when only tunesuite loads the run (our prompts)."""
    example_import, example = task.data.example
    head = [example_import] if example_import else []
    if _has_our_prompts(out):
        return None
    if not (out / "adapter_config.json").is_file():
        return ("With transformers", [*head, "from transformers import pipeline", "",
                                      f'pipe = pipeline("{pipeline_tag}", model=path)', f"print(pipe({example}))"])
    from peft import PeftConfig

    adapter = PeftConfig.from_pretrained(str(out))
    parts = _processor_parts(out)
    auto = task.model.auto_model.__name__
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
    if _has_our_prompts(out):
        return ("The trained prompts are tunesuite modules: transformers alone would load this model without them "
                "(and warn about the `prompt.*` weights), so load it with tunesuite.")
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
