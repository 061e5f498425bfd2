"""The model card (README.md) of a finished run: Hub metadata, what was trained, how well, how to repeat and load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .files import write_text_atomic

LIBRARY = {True: "peft", False: "transformers"}


def _metric_rows(metrics: dict[str, Any]) -> list[str]:
    rows = []
    for key, value in sorted(metrics.items()):
        if key.startswith(("eval_", "test_")) and isinstance(value, float) and not key.endswith(
                ("_runtime", "_per_second", "_loss")):
            rows.append(f"| {key} | {value:.4f} |")
    return rows


def _lora_line(run: dict[str, Any]) -> list[str]:
    """The LoRA settings, when the run dict has them."""
    if "lora_r" not in run:
        return []
    targets = run.get("lora_target_modules") or ["the model family's default"]
    extras = [name for key, name in (("use_dora", "DoRA"), ("use_rslora", "rank-stabilised")) if run.get(key)]
    return [f"- LoRA: r={run['lora_r']}, alpha={run.get('lora_alpha')}, dropout={run.get('lora_dropout')}, "
            f"targets {', '.join(targets)}" + "".join(f", {e}" for e in extras)]


def model_card(out: Path, run: dict[str, Any], metrics: dict[str, Any], command: str | None = None) -> str:
    """README.md text: YAML metadata for the Hub, then what was trained, how well, and how to load it."""
    adapter = (out / "adapter_config.json").exists()
    dataset = str(run.get("dataset", ""))
    on_hub = dataset and not Path(dataset).exists() and not dataset.startswith((".", "/"))
    meta: dict[str, Any] = {"library_name": LIBRARY[adapter], "pipeline_tag": run["task"],
                            "tags": ["tunesuite", f"mode-{run['mode']}"], "base_model": run.get("model")}
    if on_hub:
        meta["datasets"] = [dataset]
    names = sorted({k.split("_", 1)[1] for k in metrics if k.startswith(("eval_", "test_"))
                    and not k.endswith(("_runtime", "_per_second", "_loss"))})
    meta["metrics"] = names
    command = command or "tunesuite train " + run["task"] + " --config run_config.yaml"
    load = ("from peft import PeftModel  # or simply: tunesuite.load(path)\n" if adapter else
            f'from transformers import pipeline\npipe = pipeline("{run["task"]}", model=path)\n')
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
        f"# {out.name}", "",
        f"Fine-tuned with [tunesuite](https://pypi.org/project/tunesuite/) for **{run['task']}**.", "",
        f"- Base model: `{run.get('model')}`",
        f"- Mode: `{run['mode']}` — {metrics.get('trainable_percent', 0):.2f}% of "
        f"{metrics.get('total_params', 0):,} parameters trained",
        *_lora_line(run),
        f"- Data: `{dataset}` (train split `{run.get('train_split')}`, eval split `{run.get('eval_split')}`)",
        f"- Epochs: {run.get('num_train_epochs')}, learning rate: {run.get('learning_rate')}, seed: {run.get('seed')}",
        *([f"- Chosen by `--mode auto`: {run['auto_choice']}"] if run.get("auto_choice") else []),
        "", "## Results", "", "| metric | value |", "|---|---|", *_metric_rows(metrics), "",
        "## Reproduce", "", "```bash", command, "```", "",
        "## Load", "", "```python", "import tunesuite", "predictor = tunesuite.load(path)",
        "predictor.predict([...])", load.rstrip(), "```", ""]
    return "\n".join(lines)


def write_card(out: Path, run: dict[str, Any], metrics: dict[str, Any], command: str | None = None) -> None:
    """README.md for the run in `out`, from its run dict (what run_config.yaml holds) and its metrics."""
    write_text_atomic(out / "README.md", model_card(out, run, metrics, command))
