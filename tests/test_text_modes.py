"""Text classification beyond the task x mode matrix (test_matrix.py, with its table of exact trainable names):
prefix tuning, unfreezing later, the frozen-feature cache."""

from __future__ import annotations

import pytest
import torch

import tunesuite

FAST = {"num_train_epochs": 5, "warmup_steps": 0.1, "disable_tqdm": True, "seed": 3, "save_strategy": "no"}
LEARNING_RATES = {"full": 1e-3, "frozen": 3e-2, "lora": 1e-2, "prompt": 3e-2}
LAYERS = (0, 1)


def lora_names(prefix: str = "base_model.model.") -> set[str]:
    names = {f"{prefix}bert.encoder.layer.{i}.attention.self.{m}.lora_{ab}.default.weight"
             for i in LAYERS for m in ("query", "value") for ab in "AB"}
    return names | classifier_copy(prefix)


def classifier_copy(prefix: str) -> set[str]:
    """The head (classifier + BERT pooler) as peft's trainable copies."""
    copy = f"{prefix}{{}}.modules_to_save.default.{{}}"
    return {copy.format("classifier", "weight"), copy.format("classifier", "bias"),
            copy.format("bert.pooler", "dense.weight"), copy.format("bert.pooler", "dense.bias")}


def train(pretrained_bert, topic_data, tmp_path, mode: str, **flags):
    out = tmp_path / mode
    result = tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode=mode,
                                output_dir=str(out), **{**FAST, "learning_rate": LEARNING_RATES[mode], **flags})
    return result, out


def test_a_full_run_is_a_plain_transformers_checkpoint(trained):
    """Loads without tunesuite too, to the logits tunesuite.load gives (the matrix checks the reload itself)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = trained("text", "full").out
    texts = ["goal team coach the match", "flour and salt in the oven", "a song for the band today"]
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(plain(**batch).logits, tunesuite.load(out).logits(texts), atol=1e-6)
    assert sorted(plain.config.id2label.values()) == ["cooking", "music", "sport"]


def _takes_past_key_values(model_class) -> bool:
    import inspect

    return "past_key_values" in inspect.signature(model_class.forward).parameters


def test_prefix_tuning_trains_or_is_refused(pretrained_bert, topic_data, tmp_path):
    """On the locked transformers BERT takes past_key_values and prefix tuning learns the toy problem; where a
    release drops them (5.24 renamed them), the run is refused naming the methods that work."""
    from transformers import BertModel

    if _takes_past_key_values(BertModel):
        result, _ = train(pretrained_bert, topic_data, tmp_path, "prompt", prompt_method="prefix_tuning",
                          learning_rate=1e-2, num_train_epochs=10)
        assert result["eval_accuracy"] >= 0.9, result
    else:
        with pytest.raises(tunesuite.TunesuiteError, match="prompt_tuning or p_tuning"):
            train(pretrained_bert, topic_data, tmp_path, "prompt", prompt_method="prefix_tuning")


def test_prefix_tuning_is_refused_for_a_model_without_past_key_values(tiny_bert, topic_data, tmp_path, capsys):
    """DistilBERT's forward never took past_key_values: one error line before any training."""
    from conftest import cli_error
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    path = tmp_path / "tiny-distilbert"
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    DistilBertModel(DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=1, n_heads=2,
                                     hidden_dim=64, max_position_embeddings=64)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    line = cli_error(capsys, tunesuite.TEXT_CLASSIFICATION,
                     ["--model", str(path), "--dataset", str(topic_data), "--mode", "prompt",
                      "--prompt-method", "prefix_tuning", "--output-dir", str(tmp_path / "out")])
    assert "distilbert model" in line and "prompt_tuning or p_tuning" in line
    assert not (tmp_path / "out" / "all_results.json").exists()


def test_unfreeze_after_epochs_trains_backbone_later(pretrained_bert, topic_data, tmp_path):
    from safetensors.torch import load_file

    result, out = train(pretrained_bert, topic_data, tmp_path, "frozen", unfreeze_after_epochs=1,
                        num_train_epochs=2)
    before = load_file(pretrained_bert / "model.safetensors")
    after = load_file(out / "model.safetensors")
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(before[key], after["bert." + key])  # the backbone moved after unfreezing
    assert result["eval_accuracy"] >= 0.9


def test_frozen_feature_cache_matches_the_normal_path(pretrained_bert, topic_data, tmp_path, caplog):
    caplog.set_level("INFO", logger="tunesuite")
    cached, _ = train(pretrained_bert, topic_data, tmp_path / "cached", "frozen")
    assert "feature cache: backbone features of 270 examples computed once" in caplog.text
    assert "feature_cache_seconds" in cached  # train_runtime: the whole run, as uncached runs report it
    assert "estimate: ~" in caplog.text and cached["estimate_epoch_s"] > 0  # timed through the cache
    assert cached["train_runtime"] == pytest.approx(cached["train_cached_runtime"] + cached["feature_cache_seconds"],
                                                    abs=1e-3)
    caplog.clear()
    normal, _ = train(pretrained_bert, topic_data, tmp_path / "normal", "frozen", cache_features="never")
    assert "feature cache off: turned off by --cache-features never" in caplog.text
    assert abs(cached["test_accuracy"] - normal["test_accuracy"]) <= 0.05
    assert cached["test_accuracy"] >= 0.9
    caplog.clear()
    partial, _ = train(pretrained_bert, topic_data, tmp_path / "layers", "frozen", trainable_layers=1, max_steps=6)
    assert "partial feature cache: the 1 frozen layers below layer 1 computed once" in caplog.text
    assert "estimate: ~" in caplog.text and partial["estimate_epoch_s"] > 0
    caplog.clear()  # no evaluation during training: only the train split goes through the backbone up front
    quiet, _ = train(pretrained_bert, topic_data, tmp_path / "no-eval", "frozen", eval_strategy="no")
    assert "feature cache: backbone features of 240 examples computed once" in caplog.text
    assert quiet["eval_accuracy"] == cached["eval_accuracy"]  # the final evaluation runs through the full model
