"""peft's other methods as modes (modes/peft_methods.py): what trains by name, flags reaching the peft config,
refusals naming the modes that work, and the merged export predicting as the adapter does. The family x mode
matrix (test_families.py) runs each of them on several families."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import model_after_mode, trainable_names
from family_fixtures import IMAGE, TEXT

import tunesuite
from tunesuite.errors import TunesuiteError
from tunesuite.modes.peft_methods import METHODS

COMMON = {"max_steps": 3, "per_device_train_batch_size": 4, "eval_strategy": "no", "save_strategy": "no",
          "disable_tqdm": True, "seed": 0, "learning_rate": 5e-2}
LAYER = "base_model.model.bert.encoder.layer.{i}.attention.self.{m}."
BERT_COPIES = {f"base_model.model.{n}" for n in (
    "classifier.modules_to_save.default.weight", "classifier.modules_to_save.default.bias",
    "bert.pooler.dense.modules_to_save.default.weight", "bert.pooler.dense.modules_to_save.default.bias")}
# what each method trains on every target (BERT's query and value in both layers), besides the head's copies
PER_TARGET = {"ia3": ("ia3_l.default",),
              "loha": ("hada_w1_a.default", "hada_w1_b.default", "hada_w2_a.default", "hada_w2_b.default"),
              "lokr": ("lokr_w1.default", "lokr_w2.default"),  # tiny layers: both factors whole
              "vera": ("vera_lambda_b.default", "vera_lambda_d.default"),
              "oft": ("oft_R.default.weight",),
              "adalora": ("lora_A.default", "lora_B.default", "lora_E.default"),
              "boft": ("boft_R.default", "boft_s.default"),
              "fourierft": ("fourierft_spectrum.default",),
              "hra": ("hra_u.default",)}


def test_every_method_is_in_the_table():
    assert set(PER_TARGET) == {m.name for m in METHODS} <= set(tunesuite.MODES)


@pytest.mark.parametrize("mode", list(PER_TARGET))
def test_what_trains_by_name(family_model, family_data, tmp_path, mode):
    model = model_after_mode(TEXT, family_model("bert"), family_data[TEXT], tmp_path, mode)
    expected = {LAYER.format(i=i, m=m) + part for i in (0, 1) for m in ("query", "value") for part in PER_TARGET[mode]}
    assert trainable_names(model) == expected | BERT_COPIES


def test_flags_reach_the_peft_config(family_model, family_data, tmp_path):
    data = family_data[TEXT]
    model = model_after_mode(TEXT, family_model("bert"), data, tmp_path / "a", "loha", "--loha-r", "2",
                             "--loha-alpha", "4", "--loha-target-modules", "key")
    config = model.peft_config["default"]
    assert (config.r, config.alpha, config.target_modules) == (2, 4, {"key"})
    model = model_after_mode(TEXT, family_model("bert"), data, tmp_path / "b", "oft", "--oft-block-size", "8")
    assert model.peft_config["default"].oft_block_size == 8
    assert model.base_model.model.bert.encoder.layer[0].attention.self.query.oft_R["default"].block_size == 8
    model = model_after_mode(TEXT, family_model("bert"), data, tmp_path / "c", "vera", "--vera-r", "16")
    assert model.peft_config["default"].r == 16


def test_a_linear_only_method_on_a_cnn_is_refused_naming_what_works(family_model, family_data, tmp_path):
    with pytest.raises(TunesuiteError, match=r"^mode vera: Linear layers only, and this family's targets are "
                                             r"convolutions \(resnet\); use --mode full, frozen, bitfit, lora, ia3, "
                                             r"loha, lokr, oft, adalora, hra, hira, prompt, or pass "
                                             r"--vera-target-modules"):
        model_after_mode(IMAGE, family_model("resnet"), family_data[IMAGE], tmp_path, "vera")
    with pytest.raises(TunesuiteError, match=r"mode loha: no module named nothing_here in this bert model; pass "
                                             r"--loha-target-modules with names such as"):
        model_after_mode(TEXT, family_model("bert"), family_data[TEXT], tmp_path / "b", "loha",
                         "--loha-target-modules", "nothing_here")


@pytest.mark.parametrize("mode", list(PER_TARGET))
def test_merged_export_predicts_as_the_adapter(family_model, family_data, tmp_path, mode):
    merged_export_predicts_as_the_adapter(family_model, family_data, tmp_path, mode)


def merged_export_predicts_as_the_adapter(family_model, family_data, tmp_path, mode: str, **flags) -> None:
    """A BERT run of `mode` saves its peft adapter; the merged export predicts what the adapter predicts."""
    tunesuite.finetune(TEXT, str(family_model("bert")), str(family_data[TEXT]), mode=mode,
                       output_dir=str(tmp_path / "out"), **COMMON, **flags)
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["peft_type"] == mode.upper()
    items = ["alpha beta gamma", "delta epsilon", "zeta"]
    adapter = tunesuite.load(tmp_path / "out")
    merged = tunesuite.load(tunesuite.export(tmp_path / "out", tmp_path / "merged"))
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert not hasattr(merged.model, "peft_config")
    before = adapter.logits(items)
    assert torch.allclose(merged.logits(items), before, atol=1e-4), (merged.logits(items), before)


def test_adalora_schedule_comes_from_the_run_and_ranks_move(family_model, family_data, tmp_path, log):
    """The total steps reach peft's config when training begins, and update_and_allocate runs after each optimizer
    step: by the end the budget is spent, ranks differ per target, and the saved adapter records them."""
    out = tmp_path / "out"
    tunesuite.finetune(TEXT, str(family_model("bert")), str(family_data[TEXT]), mode="adalora",
                       output_dir=str(out), adalora_init_r=4, adalora_target_r=2, adalora_warmup=0.0,
                       adalora_final=0.5, **{**COMMON, "max_steps": 6})
    saved = json.loads((out / "adapter_config.json").read_text())
    assert (saved["total_step"], saved["tinit"], saved["tfinal"]) == (6, 0, 3)
    assert "AdaLoRA: ranks 4 -> 2 on average over 6 steps (warm-up 0, final 3)" in log.text
    ranks = [sum(kept) for kept in saved["rank_pattern"].values()]
    assert len(ranks) == 4 and sum(ranks) == 2 * 4 and len(set(ranks)) > 1, saved["rank_pattern"]
