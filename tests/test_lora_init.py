"""`--lora-init` (modes/lora_init.py): each start sets A, B (and for PiSSA/OLoRA the base weight) as peft says,
the run trains, saves and reloads to the predictions it wrote; the starts peft cannot run here are refused."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import model_after_mode
from family_fixtures import TEXT

import tunesuite
from tunesuite.errors import TunesuiteError

COMMON = {"max_steps": 3, "per_device_train_batch_size": 4, "eval_strategy": "no", "save_strategy": "no",
          "disable_tqdm": True, "seed": 0, "learning_rate": 5e-2, "do_predict": True, "lora_r": 4}
QUERY = "base_model.model.bert.encoder.layer.0.attention.self.query"


def _start(family_model, family_data, tmp_path, init):
    model = model_after_mode(TEXT, family_model("bert"), family_data[TEXT], tmp_path / init, "lora",
                             "--lora-r", "4", "--lora-init", init)
    query = model.get_submodule(QUERY)
    a, b = query.lora_A["default"].weight, query.lora_B["default"].weight
    return query.base_layer.weight.detach().clone(), a, query.scaling["default"] * b


def test_each_start_sets_the_weights_as_peft_says(family_model, family_data, tmp_path):
    base, a, b = _start(family_model, family_data, tmp_path, "default")
    assert not b.any() and a.abs().max() <= 1 / a.shape[1] ** 0.5 + 1e-6  # Kaiming uniform A, zero B
    _, a, b = _start(family_model, family_data, tmp_path, "gaussian")
    assert not b.any() and a.abs().max() > 1 / a.shape[1] ** 0.5  # a normal draw goes beyond the uniform bound
    _, a, b = _start(family_model, family_data, tmp_path, "orthogonal")
    assert b.any() and torch.linalg.matrix_rank(a.detach()) == a.shape[0] // 2  # A, B from halves of one Q: rank r/2
    for init in ("pissa", "olora"):  # part of W moved into B A: the residual plus B A is W again
        residual, a, b = _start(family_model, family_data, tmp_path, init)
        assert b.any() and not torch.equal(residual, base), init
        assert torch.allclose(residual + b @ a, base, atol=1e-5), init
    _, a, b = _start(family_model, family_data, tmp_path, "eva")  # A comes from the data pass, at step 0
    assert not b.any()


@pytest.mark.parametrize("init", ["pissa", "eva"])
def test_a_run_trains_saves_and_reloads_to_its_predictions(family_model, family_data, tmp_path, log, init):
    out = tmp_path / "out"
    result = tunesuite.finetune(TEXT, str(family_model("bert")), str(family_data[TEXT]), mode="lora",
                                output_dir=str(out), lora_init=init, **COMMON,
                                **({"lora_layers": 1} if init == "eva" else {}))
    assert result["train_loss"] == result["train_loss"]
    adapter = json.loads((out / "adapter_config.json").read_text())
    if init == "pissa":  # converted for the untouched base model: a plain LoRA of twice the rank
        assert (adapter["r"], adapter["init_lora_weights"]) == (8, True)
        assert "saved as a rank-8 LoRA of the untouched base model" in log.text
    else:
        assert "LoRA init eva: A set from the principal directions" in log.text
        assert "feature cache off: --lora-init eva runs the whole model on the training batches first" in log.text
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    predicted = tunesuite.load(out).predict([r["text"] for r in rows])
    assert [p["label"] for p in predicted] == [r["label"] for r in rows]
    assert [p["score"] for p in predicted] == pytest.approx([r["score"] for r in rows], abs=1e-4)
    merged = tunesuite.load(tunesuite.export(out, tmp_path / "merged"))
    assert [p["label"] for p in merged.predict([r["text"] for r in rows])] == [r["label"] for r in rows]


def test_starts_peft_cannot_run_here_are_refused_naming_those_that_work(family_model, family_data, tmp_path):
    works = "use one of default, gaussian, orthogonal, pissa, olora, eva"
    with pytest.raises(TunesuiteError, match=rf"^--lora-init loftq: needs bitsandbytes and a quantised model; {works}"):
        _start(family_model, family_data, tmp_path, "loftq")
    with pytest.raises(TunesuiteError, match=rf"^--lora-init svd: not a LoRA initialisation; {works}"):
        _start(family_model, family_data, tmp_path, "svd")
