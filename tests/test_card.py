"""The model card: huggingface_hub metadata with model-index results, the per-class table, the curves image, and
loading snippets that really run (each is executed against a tiny saved run and must predict what tunesuite does)."""

from __future__ import annotations

import ast
import json
import re

import pytest
import yaml
from huggingface_hub import ModelCard

from tunesuite.publish import card

# One run per kind of saved model: a plain checkpoint (full, frozen, bitfit), a LoRA adapter, a peft prompt (text),
# our own prompts (image, speech), and the other tasks' LoRA and plain runs.
RUNS = [("text", "full"), ("text", "frozen"), ("text", "bitfit"), ("text", "lora"), ("text", "prompt"),
        ("image-vit", "prompt"), ("image-vit", "lora"), ("speech", "lora"), ("speech", "prompt"), ("audio", "full")]


def code_blocks(text: str) -> dict[str, str]:
    """'### title' -> the python block under it, in the card's Load section."""
    load = text.split("## Load", 1)[1]
    return dict(re.findall(r"### (.+?)\n\n```python\n(.*?)\n```", load, flags=re.S))


def top(printed: str) -> tuple[str, float | None]:
    """The first prediction's label (or transcript) and score from a snippet's printed output."""
    value = ast.literal_eval(printed.strip().splitlines()[-1])
    first = value[0] if isinstance(value, list) else value
    return first.get("label", first.get("text")), first.get("score")


@pytest.mark.parametrize("setup,mode", RUNS)
def test_every_loading_snippet_runs_and_predicts_like_tunesuite(trained, capsys, setup, mode):
    run = trained(setup, mode, max_steps=2)
    blocks = code_blocks((run.out / "README.md").read_text())
    assert "With tunesuite" in blocks
    printed = {}
    for title, code in blocks.items():
        capsys.readouterr()
        exec(compile(code, f"<card: {title}>", "exec"), {})  # noqa: S102 (the card's own code, as a user runs it)
        printed[title] = top(capsys.readouterr().out)
    ours = printed.pop("With tunesuite")
    config = json.loads((run.out / "config.json").read_text())
    if "tunesuite_prompt" in config:  # our prompts: only tunesuite loads them, and the card says so
        assert printed == {} and "load it with tunesuite" in (run.out / "README.md").read_text()
        return
    (title, theirs), = printed.items()
    assert title == ("With transformers and peft" if (run.out / "adapter_config.json").exists()
                     else "With transformers")
    assert theirs[0] == ours[0]
    if ours[1] is not None:
        assert theirs[1] == pytest.approx(ours[1], abs=1e-4)
    if mode == "lora":  # the snippet ends in a prediction, not at an import
        assert blocks[title].strip().splitlines()[-1].startswith("print(pipe(")


def test_model_index_holds_the_eval_and_test_results(trained):
    run = trained("text", "lora", max_steps=2)
    data = ModelCard.load(run.out / "README.md").data
    results = json.loads((run.out / "all_results.json").read_text())
    found = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    expected = {(split_name, key.split("_", 1)[1]): value for key, value in results.items()
                for prefix, split_name in (("eval_", "validation"), ("test_", "test"))
                if key.startswith(prefix) and not key.endswith(("_loss", "_runtime", "_per_second"))}
    assert {"accuracy", "macro_f1"} <= {metric for _, metric in found}
    assert found == pytest.approx(expected, abs=1e-6)
    assert {r.task_type for r in data.eval_results} == {"text-classification"}
    assert data.model_name == run.out.name and data.library_name == "peft"


def test_card_shows_mode_trainable_share_and_per_class_table(trained):
    run = trained("text", "lora", max_steps=2)
    text = (run.out / "README.md").read_text()
    results = json.loads((run.out / "all_results.json").read_text())
    assert f"- Mode: `lora` — {results['trainable_percent']:.2f}% of {results['total_params']:,}" in text
    per_class = json.loads((run.out / "test_per_class.json").read_text())
    for name, row in per_class.items():
        assert f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |" \
               in text
    assert f"| accuracy | {results['eval_accuracy']:.4f} | {results['test_accuracy']:.4f} |" in text


def test_curves_image_is_embedded_when_the_report_wrote_it(tmp_path):
    run = {"task": "text-classification", "mode": "full", "model": "m", "dataset": "imdb"}
    assert "learning_curves.png" not in card.model_card(tmp_path, run, {})
    (tmp_path / "learning_curves.png").write_bytes(b"\x89PNG")
    assert "![learning curves](learning_curves.png)" in card.model_card(tmp_path, run, {})


def test_hub_runs_load_from_the_repo(tmp_path):
    run = {"task": "text-classification", "mode": "full", "model": "m", "dataset": "imdb", "push_to_hub": True,
           "hub_model_id": "me/topics"}
    text = card.model_card(tmp_path, run, {"eval_accuracy": 0.5})
    assert 'path = snapshot_download("me/topics")' in text and str(tmp_path) not in text.split("## Load")[1]
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["model-index"][0]["name"] == "me/topics" and meta["datasets"] == ["imdb"]


def test_card_is_written_from_the_run_dict_it_is_given(tmp_path):
    """The trainer hands the card its run (cfg.saved): no run_config.yaml needs to exist, none is read."""
    run = {"task": "text-classification", "mode": "bitfit", "model": "/models/bert", "dataset": "imdb",
           "learning_rate": 1e-3, "num_train_epochs": 2, "seed": 7}
    card.write_card(tmp_path, run, {"eval_accuracy": 0.93, "trainable_percent": 0.1, "total_params": 1000})
    text = (tmp_path / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["tags"] == ["tunesuite", "mode-bitfit"] and meta["datasets"] == ["imdb"]
    assert "| accuracy | 0.9300 |" in text and "learning rate: 0.001, seed: 7" in text
    assert not (tmp_path / "run_config.yaml").exists()


def test_card_names_the_lora_settings(tmp_path):
    run = {"task": "text-classification", "mode": "lora", "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
           "lora_target_modules": ["all-linear"], "use_dora": True, "use_rslora": False}
    text = card.model_card(tmp_path, run, {})
    assert "- LoRA: r=4, alpha=8, dropout=0.0, targets all-linear, DoRA\n" in text
    assert "- LoRA:" not in card.model_card(tmp_path, {"task": "text-classification", "mode": "full"}, {})


def test_merged_upload_carries_a_card_for_a_plain_model(trained, capsys, tmp_path):
    """--push-merged uploads a plain checkpoint: its card loads it with transformers alone, and that runs."""
    from tunesuite.publish import hub

    run = trained("text", "lora", max_steps=2)
    staged = hub.stage_upload(run.out, tmp_path / "upload", merged=True)
    text = (staged / "README.md").read_text()
    blocks = code_blocks(text)
    assert set(blocks) == {"With tunesuite", "With transformers"} and "peft" not in blocks["With transformers"]
    assert text.splitlines()[text.splitlines().index("---", 1) + 2] == f"# {run.out.name}"
    assert "| class | precision | recall | f1 | support |" in text
    printed = {}
    for title, code in blocks.items():
        capsys.readouterr()
        exec(compile(code, f"<card: {title}>", "exec"), {})  # noqa: S102
        printed[title] = top(capsys.readouterr().out)
    assert printed["With transformers"][0] == printed["With tunesuite"][0]
    assert printed["With transformers"][1] == pytest.approx(printed["With tunesuite"][1], abs=1e-4)
