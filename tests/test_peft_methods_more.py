"""peft's newer methods as modes (modes/peft_methods_more.py): what trains by name on the tiny BERT, the merged
export predicting as the adapter does, and the refusals (a CNN; a size its flags set that a layer cannot take).
The family x mode matrix (test_families.py) runs each of them on a text, an image and a speech family."""

from __future__ import annotations

import pytest
from conftest import model_after_mode, trainable_names
from family_fixtures import IMAGE, TEXT
from test_peft_methods import merged_export_predicts_as_the_adapter

import tunesuite
from tunesuite import registry
from tunesuite.cli import family_cells
from tunesuite.errors import TunesuiteError
from tunesuite.modes.peft_methods_more import NEWER

SMALL = {"miss": {"miss_r": 4}, "shira": {"shira_r": 4}}  # peft's defaults exceed a 32-wide layer
ATTENTION = "base_model.model.bert.encoder.layer.{i}.attention.self.{m}."
NORMS = "base_model.model.bert.encoder.layer.{i}.{m}.LayerNorm.ln_tuning_layers.default."
BERT_COPIES = {f"base_model.model.{n}" for n in (
    "classifier.modules_to_save.default.weight", "classifier.modules_to_save.default.bias",
    "bert.pooler.dense.modules_to_save.default.weight", "bert.pooler.dense.modules_to_save.default.bias")}
# what each method trains on every target (BERT's query and value in both layers), besides the head's copies
PER_TARGET = {"miss": ("miss_block.default",), "c3a": ("c3a_kernel.default",), "shira": ("shira_weight.default",),
              "randlora": ("randlora_gamma.default", "randlora_lambda.default"),
              "vblora": ("vblora_logits_A.default", "vblora_logits_B.default"),
              "road": ("road_alpha.default", "road_theta.default"),
              "delora": ("delora_A.default", "delora_B.default", "delora_lambda.default"),
              "waveft": ("waveft_spectrum.default",), "gralora": ("gralora_A.default", "gralora_B.default"),
              "pvera": ("pvera_lambda_b.default", "pvera_lambda_d.default"),
              "deft": ("deft_P.default", "deft_R.default"),
              "glora": tuple(f"glora_{m}.default.{p}" for m in "ABC" for p in ("Xd", "Xu")) + ("glora_D.default.X",
                                                                                             "glora_E.default.X"),
              "psoft": tuple(f"psoft_R.default.{p}" for p in ("vector_a", "vector_b", "weight")),
              "hira": ("hira_A.default", "hira_B.default"), "supertuning": ("supertuning_values.default",),
              "beft": ("beft_bias.default",),
              "adamss": tuple(f"adamss_{m}.default.{k}" for m in "AB" for k in range(5)),
              "peanut": ("peanut_A.default.weight", "peanut_B.default.weight"),
              "frod": ("frod_lambda_l.default", "frod_lambda_s_values.default")}
# trained once for every target, held by the first (TinyLoRA: a vector per target; Uni-LoRA: one vector for all)
SHARED = {"tinylora": tuple(f"tinylora_v.default.{k}" for k in range(4)), "unilora": ("unilora_theta_d.default",)}


def argv(mode: str) -> list[str]:
    return [a for k, v in SMALL.get(mode, {}).items() for a in ("--" + k.replace("_", "-"), str(v))]


def expected(mode: str) -> set[str]:
    if mode == "ln_tuning":  # the LayerNorms of the layer stack (not the embeddings'), weight and bias
        return {NORMS.format(i=i, m=m) + p for i in (0, 1) for m in ("attention.output", "output")
                for p in ("weight", "bias")} | BERT_COPIES
    if mode in SHARED:
        return {ATTENTION.format(i=0, m="query") + part for part in SHARED[mode]} | BERT_COPIES
    adapters = {ATTENTION.format(i=i, m=m) + part for i in (0, 1) for m in ("query", "value")
                for part in PER_TARGET[mode]}
    if mode == "vblora":  # one vector bank, shared by every target (peft keeps it on the first)
        adapters.add(ATTENTION.format(i=0, m="query") + "vblora_vector_bank.default")
    return adapters | BERT_COPIES


def test_every_newer_method_is_tested_and_registered():
    assert set(PER_TARGET) | set(SHARED) | {"ln_tuning"} == {m.name for m in NEWER} <= set(tunesuite.MODES)


@pytest.mark.parametrize("mode", [m.name for m in NEWER])
def test_what_trains_by_name(family_model, family_data, tmp_path, mode):
    model = model_after_mode(TEXT, family_model("bert"), family_data[TEXT], tmp_path, mode, *argv(mode))
    assert trainable_names(model) == expected(mode)


def test_flags_reach_the_peft_config(family_model, family_data, tmp_path):
    model = model_after_mode(TEXT, family_model("bert"), family_data[TEXT], tmp_path, "gralora", "--gralora-r", "4",
                             "--gralora-k", "4", "--gralora-alpha", "8", "--gralora-target-modules", "key")
    config = model.peft_config["default"]
    assert (config.r, config.gralora_k, config.alpha, config.target_modules) == (4, 4, 8, {"key"})


@pytest.mark.parametrize("mode", ["c3a", "ln_tuning"])
def test_a_cnn_is_refused_naming_what_works(family_model, family_data, tmp_path, mode):
    with pytest.raises(TunesuiteError, match=rf"^mode {mode}: .*\(resnet\); use --mode full, frozen, bitfit, lora, "
                                             rf"ia3, loha, lokr, oft, adalora, hra, hira, prompt, or pass "
                                             rf"--{mode.replace('_', '-')}-target-modules"):
        model_after_mode(IMAGE, family_model("resnet"), family_data[IMAGE], tmp_path, mode)


def test_on_convnext_only_gralora_and_frod_are_refused():
    """ConvNeXt's pointwise Linear layers take (N, H, W, C) maps: a probe merged every other newer method there;
    GraLoRA's layer unpacks three dimensions and fails, and FRoD cannot decompose stages of two widths together."""
    cells = family_cells(registry.find_family("convnext"))
    assert [m.name for m in NEWER if cells[m.name].startswith("refused")] == ["gralora", "frod"]


def test_a_size_the_layers_cannot_take_is_one_line_naming_the_flags(family_model, family_data, tmp_path):
    with pytest.raises(TunesuiteError) as refused:  # MiSS's default shard (64) is wider than the tiny BERT (32)
        model_after_mode(TEXT, family_model("bert"), family_data[TEXT], tmp_path, "miss")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("mode miss: peft cannot adapt this bert model with these "
                                                      "flags: `r` (64) must be less than or equal to in_features")
    assert message.endswith("(change the --miss-* flags, or pass --miss-target-modules naming other layers)")


@pytest.mark.parametrize("mode", [m.name for m in NEWER])
def test_merged_export_predicts_as_the_adapter(family_model, family_data, tmp_path, mode):
    merged_export_predicts_as_the_adapter(family_model, family_data, tmp_path, mode, **SMALL.get(mode, {}))


def test_frod_refuses_targets_of_one_kind_in_several_shapes(family_model, family_data, tmp_path):
    """FRoD decomposes every layer's `q_proj` together: Swin's two stages (16 and 32 wide) cannot share that. The
    family table refuses Swin; targets named by hand meet the same rule, on the shapes themselves."""
    assert family_cells(registry.find_family("swin"))["frod"].startswith("refused: it decomposes each kind")
    with pytest.raises(TunesuiteError, match=r"^mode frod: it decomposes each kind of target jointly across the "
                                             r"layers, so they must share one shape, and its \S*q_proj layers come in "
                                             r"2 shapes \(\(16, 16\), \(32, 32\)\) \(swin\); use --mode "):
        model_after_mode(IMAGE, family_model("swin"), family_data[IMAGE], tmp_path, "frod",
                         "--frod-target-modules", "q_proj")


def test_beft_skips_layers_without_a_bias(tiny_whisper_model, tone_data, tmp_path):
    """Whisper's k_proj has no bias: BEFT (a learned bias shift) adapts the q_proj layers beside it, and refuses
    k_proj alone in one line."""
    model = model_after_mode("asr", tiny_whisper_model, tone_data, tmp_path, "beft",
                             "--beft-target-modules", "q_proj", "k_proj")
    adapted = {n.split(".beft_bias.")[0] for n in trainable_names(model) if ".beft_bias." in n}
    assert adapted and all(n.endswith(".q_proj") for n in adapted), adapted
    with pytest.raises(TunesuiteError, match=r"^mode beft: it shifts a layer's bias, and none of these layers has "
                                             r"one \(whisper: k_proj\); use --mode "):
        model_after_mode("asr", tiny_whisper_model, tone_data, tmp_path, "beft", "--beft-target-modules", "k_proj")
