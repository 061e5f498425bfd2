"""Every model family x every registered mode: a two-step run trains exactly what the mode says (or is refused
with the reason the family table (docs/families.md) gives), and the saved run reloads to the predictions it wrote."""

from __future__ import annotations

import json

import pytest
from conftest import recording_trainable
from family_fixtures import FAMILY_TASKS, IMAGE, SPEECH
from test_matrix import PEFT_ADAPTERS, check_trainable

import tunesuite
from tunesuite import registry
from tunesuite.cli import family_cells
from tunesuite.errors import TunesuiteError
from tunesuite.modes import peft_methods_more

COMMON = {"max_steps": 2, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8, "eval_strategy": "no",
          "save_strategy": "no", "do_predict": True, "disable_tqdm": True, "seed": 0, "logging_steps": 2}
PER_TASK = {IMAGE: {"augment": False}}  # deterministic inputs: frozen runs go through the feature cache
PER_MODE = {"prompt": {"num_virtual_tokens": 2, "prompt_pad": 4}, "lora": {"lora_r": 2},
            "miss": {"miss_r": 4}, "shira": {"shira_r": 4}}  # peft's defaults exceed a 32-wide layer
# DistilBERT computes between its head modules (an inline ReLU after pre_classifier): the cache cannot replay its
# head, so frozen runs take the normal path and the log says why.
UNCACHED = {"distilbert": "feature cache off: the model's head cannot be replayed on cached features"}
OUTPUT = {"text-classification": ("text", "label"), IMAGE: ("image", "label"), SPEECH: ("path", "text")}


# peft's other methods share one code path (modes/peft_methods.py): these families cover their kinds of layer
SAMPLED = ("bert", "roberta", "distilbert", "vit", "resnet", "convnext", "wav2vec2")
# the methods added later run on one family per kind of layer: Linear text, CNN convolutions, 4-D maps, speech
LEAN, LEAN_SAMPLED = {"adalora", "boft", "fourierft", "hra"}, ("bert", "resnet", "convnext", "wav2vec2")
# the newer ones (modes/peft_methods_more.py, Linear layers only): a text, an image and a speech family, and a CNN
NEWER = {m.name for m in peft_methods_more.NEWER}
NEWER_SAMPLED = ("bert", "vit", "resnet", "wav2vec2")
CELLS = [(family, mode) for family in FAMILY_TASKS for mode in tunesuite.MODES
         if (mode not in PEFT_ADAPTERS or family in (NEWER_SAMPLED if mode in NEWER else LEAN_SAMPLED
                                                     if mode in LEAN else SAMPLED))
         and not tunesuite.MODES[mode].trains_nothing and not tunesuite.MODES[mode].fits]


@pytest.mark.parametrize(("family", "mode"), CELLS)
def test_family_trains_in_every_mode(family_model, family_data, tmp_path, log, family, mode):
    task = FAMILY_TASKS[family]
    cell = family_cells(registry.find_family(family))[mode]
    flags = {**COMMON, **PER_TASK.get(task, {}), **PER_MODE.get(mode, {})}
    with recording_trainable(mode) as seen:
        if cell.startswith("refused"):
            with pytest.raises(TunesuiteError, match=cell.split(": ", 1)[1].split(";")[0]):
                tunesuite.finetune(task, str(family_model(family)), str(family_data[task]), mode=mode,
                                   output_dir=str(tmp_path / "out"), **flags)
            return
        result = tunesuite.finetune(task, str(family_model(family)), str(family_data[task]), mode=mode,
                                    output_dir=str(tmp_path / "out"), **flags)
    assert result["train_loss"] == result["train_loss"]  # a number, not NaN
    check_trainable(tunesuite_run(result, tmp_path / "out", seen), mode)
    if mode == "frozen" and task != SPEECH:
        assert UNCACHED.get(family, "feature cache: backbone features") in log.text, log.text
    field, output = OUTPUT[task]
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    items = [r[field] for r in rows]
    predicted = tunesuite.load(tmp_path / "out").predict(items)
    if task == SPEECH:
        assert [p["text"] for p in predicted] == [r["hypothesis"] for r in rows]
    else:
        assert [(p[output], p["score"]) for p in predicted] == [(r[output], r["score"]) for r in rows]


def tunesuite_run(result, out, seen):
    from conftest import Run

    return Run(result, out, **seen)


def test_lora_all_linear_dora_rslora_and_fallback_targets(family_model, family_data, tmp_path, log, monkeypatch):
    """peft's all-linear, DoRA and rsLoRA pass through; a model type with no family entry gets every Linear
    outside the head, and the log says so."""
    from tunesuite.models import families

    task, path, data = "text-classification", str(family_model("electra")), str(family_data["text-classification"])
    flags = {**COMMON, "do_predict": False, "lora_r": 2, "use_dora": True, "use_rslora": True}
    tunesuite.finetune(task, path, data, mode="lora", output_dir=str(tmp_path / "a"),
                       lora_target_modules=["all-linear"], **flags)
    adapter = json.loads((tmp_path / "a" / "adapter_config.json").read_text())  # peft expanded all-linear
    assert adapter["use_dora"] and adapter["use_rslora"]
    assert any(t.endswith("attention.self.key") for t in adapter["target_modules"])
    assert "LoRA: r=2, alpha=16, dropout=0.1, targets all-linear, DoRA, rank-stabilised" in (
        tmp_path / "a" / "README.md").read_text()
    monkeypatch.delitem(registry.FAMILIES, "electra")
    tunesuite.finetune(task, path, data, mode="lora", output_dir=str(tmp_path / "b"), **COMMON, lora_r=2)
    assert "no LoRA targets listed for model type 'electra'; adapting every nn.Linear outside the head" in log.text
    adapter = json.loads((tmp_path / "b" / "adapter_config.json").read_text())
    assert any(t.endswith("embeddings_project") for t in adapter["target_modules"])
    assert not any(t.startswith("classifier") for t in adapter["target_modules"])
    assert families.lora_targets  # the resolver the mode used


def test_a_speech_model_with_no_prompt_kind_is_refused_as_the_table_says(family_model, family_data, tmp_path,
                                                                        monkeypatch):
    from tunesuite.cli import families_table

    monkeypatch.delitem(registry.FAMILIES, "hubert")
    cell = family_cells(registry.find_family("hubert"))["prompt"]
    assert cell == "refused: no prompt module for this model type" and cell in families_table()
    with pytest.raises(TunesuiteError, match=r"mode prompt: no prompt module for this model type \(hubert; prompts "
                                             r"exist for .*wav2vec2.*\); use --mode lora, bitfit or frozen"):
        tunesuite.finetune(SPEECH, str(family_model("hubert")), str(family_data[SPEECH]), mode="prompt",
                           output_dir=str(tmp_path / "out"), **COMMON)
