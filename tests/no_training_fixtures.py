"""Tiny checkpoints for the modes that train nothing: a sentence encoder (sentence-transformers' files beside a
tiny BERT), a masked LM, and a small topic data set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def small_topics(tmp_path_factory) -> Path:
    from conftest import write_topic_csvs

    return write_topic_csvs(tmp_path_factory.mktemp("few-topics"), n_train=30, n_eval=12)


@pytest.fixture(scope="session")
def sentence_bert(tiny_bert, tmp_path_factory) -> Path:
    """tiny_bert with sentence-transformers' files: a sentence encoder that pools by mean."""
    path = tmp_path_factory.mktemp("sentence-bert") / "model"
    shutil.copytree(tiny_bert, path)
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return path


@pytest.fixture(scope="session")
def masked_bert(tiny_bert, tmp_path_factory) -> Path:
    """A tiny BertForMaskedLM checkpoint (tiny_bert's vocabulary): the cloze path."""
    from transformers import AutoConfig, BertForMaskedLM

    path = tmp_path_factory.mktemp("masked-bert") / "model"
    shutil.copytree(tiny_bert, path)
    torch.manual_seed(0)
    BertForMaskedLM(AutoConfig.from_pretrained(tiny_bert)).save_pretrained(path)
    return path
