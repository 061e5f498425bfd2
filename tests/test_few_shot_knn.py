"""Few-shot as k nearest neighbours (`--few-shot-scorer knn`): every drawn example kept, the k nearest by cosine
vote for their classes (weighted by similarity); a finished run loads and votes the same way."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import tunesuite
from tunesuite.errors import TunesuiteError

FAST = {"per_device_eval_batch_size": 16, "disable_tqdm": True, "do_predict": True}


def _embed(model_path, texts: list[str]) -> torch.Tensor:
    """Mean-pooled unit embeddings, computed here with transformers alone."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(model_path), AutoModel.from_pretrained(model_path).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_knn_keeps_the_examples_and_the_nearest_vote(sentence_bert, small_topics, tmp_path, log):
    out = tmp_path / "knn"
    result = tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="few-shot",
                                shots=3, few_shot_scorer="knn", neighbours=3, output_dir=str(out), **FAST)
    assert result["shots_used"] == 9 and result["trainable_params"] == 0
    assert "few-shot: 9 training examples kept, the 3 nearest vote (3 per class)" in log.text
    saved = load_file(out / "model.safetensors")
    examples, labels = saved["scorer.examples"], saved["scorer.example_labels"]
    assert examples.shape[0] == 9 and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # each kept example is the embedding of a training row of its class
    with (small_topics / "train.csv").open() as f:
        rows = list(csv.DictReader(f))
    names = json.loads((out / "config.json").read_text())["id2label"]
    train = _embed(sentence_bert, [r["text"] for r in rows])
    for vector, label in zip(examples, labels, strict=True):
        nearest = int((train @ vector).argmax())
        assert torch.allclose(train[nearest], vector, atol=1e-5) and rows[nearest]["label"] == names[str(int(label))]
    # the finished run's predictions are the similarity-weighted vote of the 3 nearest, computed here
    with (small_topics / "test.csv").open() as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    top, at = (_embed(sentence_bert, texts) @ examples.T).topk(3, dim=1)
    votes = torch.zeros(len(texts), 3).scatter_add_(1, labels[at], torch.exp(20 * top))
    predicted = tunesuite.load(out).predict(texts)
    assert [p["label"] for p in predicted] == [names[str(int(i))] for i in votes.argmax(1)]


def test_knn_refuses_no_neighbours(sentence_bert, small_topics, tmp_path):
    with pytest.raises(TunesuiteError, match="--neighbours 0: give 1 or more"):
        tunesuite.finetune("text-classification", str(sentence_bert), str(small_topics), mode="few-shot",
                           few_shot_scorer="knn", neighbours=0, output_dir=str(tmp_path / "out"), **FAST)
