"""Modes that train nothing (zero-shot, few-shot): no weight changes, the run writes what every run writes, and a
finished run loads, predicts and exports like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tunesuite
from tunesuite.errors import TunesuiteError

FAST = {"per_device_eval_batch_size": 16, "disable_tqdm": True, "do_predict": True}
WORDS = "sport: goal\ncooking: oven\nmusic: guitar\n"  # label words in the tiny vocabulary


def _encoder_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The backbone's weights as saved, by their names without the model prefix."""
    weights = load_file(folder / "model.safetensors")
    return {k.removeprefix("bert."): v for k, v in weights.items()
            if not k.startswith(("scorer.", "classifier.", "cls.")) and "pooler" not in k}


def _check_run(out: Path, base: Path, result: dict, log) -> None:
    """Weights byte-identical to the base checkpoint's; every file a run writes; load/predict/export agree."""
    before, after = _encoder_weights(base), _encoder_weights(out)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert result["trainable_params"] == 0 and "train_loss" not in result
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 0  # no optimizer step
    for name in ("all_results.json", "test_per_class.json", "README.md", "report.html", "run_config.yaml"):
        assert (out / name).exists(), name
    card = (out / "README.md").read_text()
    assert "tunesuite.load" in card and "pipeline(" not in card  # transformers alone has no scorer
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows]
    predicted = tunesuite.load(out).predict(texts)
    assert [(p["label"], p["score"]) for p in predicted] == [(r["label"], r["score"]) for r in rows]
    hits = sum(r["label"] == r["reference"] for r in rows) / len(rows)
    assert hits == pytest.approx(result["test_accuracy"])
    exported = tunesuite.export(out, out.parent / "exported")
    assert [p["label"] for p in tunesuite.load(exported).predict(texts)] == [r["label"] for r in rows]
    assert "classes live in its scorer, which plain transformers does not read" in log.text


def test_zero_shot_scores_prompts_with_a_sentence_encoder(sentence_bert, small_topics, tmp_path, log):
    words = tmp_path / "words.yaml"
    words.write_text(WORDS)
    out = tmp_path / "zero"
    result = tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="zero-shot",
                                output_dir=str(out), label_prompt="it is {label}", label_words=str(words), **FAST)
    assert "zero-shot: 3 class prompts, e.g. 'it is oven'" in log.text
    _check_run(out, sentence_bert, result, log)
    saved = json.loads((out / "config.json").read_text())["tunesuite_scorer"]
    assert saved["kind"] == "embedding" and saved["pooling"] == "mean"


def test_few_shot_centroids_of_k_examples(sentence_bert, small_topics, tmp_path, log):
    out = tmp_path / "few"
    result = tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="few-shot",
                                shots=3, output_dir=str(out), **FAST)
    assert result["shots_used"] == 9 and result["weights_sha256"]
    _check_run(out, sentence_bert, result, log)
    again = tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="few-shot",
                               shots=3, output_dir=str(tmp_path / "again"), **FAST)
    assert again["test_loss"] == result["test_loss"]  # the draw is seeded
    other = tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="few-shot",
                               shots=3, seed=5, output_dir=str(tmp_path / "other"), **FAST)
    assert other["test_loss"] != result["test_loss"]


def test_zero_shot_cloze_on_a_masked_lm(masked_bert, small_topics, tmp_path, log):
    words = tmp_path / "words.yaml"
    words.write_text(WORDS)
    out = tmp_path / "cloze"
    result = tunesuite.finetune("text-classification", str(masked_bert), str(small_topics), mode="zero-shot",
                                output_dir=str(out), label_prompt="it is {label} .", label_words=str(words), **FAST)
    assert "zero-shot cloze: pattern ' it is [MASK] .', label words oven, guitar, goal" in log.text
    _check_run(out, masked_bert, result, log)
    # the scorer's logits are the masked LM's own logits of the label words at the mask
    from transformers import BertForMaskedLM, BertTokenizerFast

    tokenizer, mlm = BertTokenizerFast.from_pretrained(masked_bert), BertForMaskedLM.from_pretrained(masked_bert)
    text = "the band was very loud today"
    inputs = tokenizer(f"{text} it is [MASK] .", return_tensors="pt")
    at = inputs["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    with torch.no_grad():
        expected = mlm(**inputs).logits[0, at, tokenizer.convert_tokens_to_ids(["goal", "oven", "guitar"])]
    labels = json.loads((out / "config.json").read_text())["id2label"]
    order = [{"sport": 0, "cooking": 1, "music": 2}[labels[str(i)]] for i in range(3)]
    torch.testing.assert_close(tunesuite.load(out).logits([text])[0], expected[order])


def test_zero_shot_refuses_a_checkpoint_with_neither(tiny_bert, small_topics, tmp_path):
    with pytest.raises(TunesuiteError, match="neither a sentence encoder .* nor a masked language model"):
        tunesuite.finetune("text-classification", str(tiny_bert), str(small_topics), mode="zero-shot",
                           output_dir=str(tmp_path / "out"), **FAST)


def test_bad_label_words_and_shots_name_the_fix(sentence_bert, small_topics, tmp_path):
    words = tmp_path / "words.yaml"
    words.write_text("sport: goal\n")
    with pytest.raises(TunesuiteError, match=r"--label-words .*: no words for 'cooking'"):
        tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="zero-shot",
                           label_words=str(words), output_dir=str(tmp_path / "a"), **FAST)
    with pytest.raises(TunesuiteError, match="--shots 0: .* --mode zero-shot"):
        tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="few-shot", shots=0,
                           output_dir=str(tmp_path / "b"), **FAST)
