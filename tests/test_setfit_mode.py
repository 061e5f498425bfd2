"""`--mode setfit`: setfit trains the encoder body on K examples per class; the run's model carries exactly the body
setfit trained, the classes are centroids of the new embeddings, and a finished run loads and predicts as the run
did."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tunesuite
from tunesuite.errors import TunesuiteError

pytest.importorskip("setfit")  # in the dev extra: CI runs this

FAST = {"per_device_eval_batch_size": 16, "disable_tqdm": True, "do_predict": True, "setfit_iterations": 2,
        "setfit_batch_size": 8}


def _body(folder: Path) -> dict[str, torch.Tensor]:
    weights = load_file(folder / "model.safetensors")
    return {k.removeprefix("bert."): v for k, v in weights.items()
            if not k.startswith(("scorer.", "classifier.", "cls.")) and "pooler" not in k}


def test_setfit_trains_the_body_and_the_run_keeps_it(sentence_bert, small_topics, tmp_path, monkeypatch, log):
    import setfit

    trained = []
    original = setfit.Trainer.train

    def keep_body(self, *args, **kwargs):  # the body setfit trained, to compare the run's model with
        original(self, *args, **kwargs)
        trained.append(self.model.model_body)

    monkeypatch.setattr(setfit.Trainer, "train", keep_body)
    out = tmp_path / "setfit"
    result = tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="setfit",
                                shots=3, output_dir=str(out), **FAST)
    assert result["shots_used"] == 9 and result["weights_sha256"] != result["weights_sha256_before"]
    before, after = _body(sentence_bert), _body(out)
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert "setfit: the body trained on pairs of 9 examples (3 per class, 2 iterations)" in log.text

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows]
    loaded = tunesuite.load(out)
    assert [(p["label"], p["score"]) for p in loaded.predict(texts)] == [(r["label"], r["score"]) for r in rows]
    assert sum(r["label"] == r["reference"] for r in rows) / len(rows) == pytest.approx(result["test_accuracy"])

    model = loaded.model  # OUT's encoder embeds as the SentenceTransformer setfit trained does
    batch = loaded.processor(texts[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model.scorer.embed(model.base_model, batch["input_ids"], batch["attention_mask"],
                                  batch.get("token_type_ids"))
    theirs = trained[0].encode(texts[:4], convert_to_tensor=True, normalize_embeddings=True)
    assert torch.allclose(ours, theirs.to(ours.device), atol=1e-5)
    for name in ("all_results.json", "test_per_class.json", "README.md", "report.html", "run_config.yaml"):
        assert (out / name).exists(), name


def test_setfit_refuses_no_shots_and_a_missing_library(sentence_bert, small_topics, tmp_path, monkeypatch):
    with pytest.raises(TunesuiteError, match="--shots 0: .* --mode zero-shot"):
        tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="setfit", shots=0,
                           output_dir=str(tmp_path / "a"), **FAST)
    real_import = builtins.__import__

    def no_setfit(name, *args, **kwargs):
        if name == "setfit" or name.startswith("setfit."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_setfit)
    with pytest.raises(TunesuiteError, match=r"--mode setfit needs the setfit package: pip install -e '\.\[setfit\]'"):
        tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="setfit", shots=3,
                           output_dir=str(tmp_path / "b"), **FAST)


def test_compare_shots_runs_setfit_on_every_row_of_each_draw(sentence_bert, small_topics, tmp_path):
    out = tmp_path / "curve"
    result = tunesuite.compare("text-classification", str(sentence_bert), str(small_topics), modes=["setfit"],
                               shots=[2], output_dir=str(out), eval_strategy="no", **FAST)
    points = {(p["mode"], p["shots"]): p for p in result["points"]}
    assert set(points) == {("few-shot", 2), ("setfit", 2)}
    assert points["setfit", 2]["status"] == "ok", points
    ran = json.loads((out / "shots-2" / "setfit" / "seed-42" / "all_results.json").read_text())
    assert ran["shots_used"] == 6 and ran["weights_sha256"] != ran["weights_sha256_before"]  # the whole draw


def test_setfit_with_the_knn_scorer_keeps_the_new_embeddings(sentence_bert, small_topics, tmp_path):
    out = tmp_path / "knn"
    tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="setfit", shots=2,
                       few_shot_scorer="knn", neighbours=3, output_dir=str(out), **FAST)
    assert json.loads((out / "config.json").read_text())["tunesuite_scorer"]["examples"] == 6
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    predicted = tunesuite.load(out).predict([r["text"] for r in rows])
    assert [p["label"] for p in predicted] == [r["label"] for r in rows]
