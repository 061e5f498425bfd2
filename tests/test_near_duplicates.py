"""Near-duplicate leakage (train/near_duplicates.py): test rows copied into train with their case and punctuation
changed, or pictures resized and re-encoded, are counted in the log and listed in OUT/near_duplicates.csv; exact
copies stay in duplicates.csv only; --skip-duplicate-check writes neither."""

from __future__ import annotations

import csv
import logging
import random

import numpy as np
from conftest import WORDS, make_sentence, write_topic_csvs
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

import tunesuite
from tunesuite.train import duplicates, near_duplicates

FAST = {"save_strategy": "no", "eval_strategy": "no", "disable_tqdm": True, "num_train_epochs": 1}


def test_text_keys_drop_case_punctuation_and_spacing():
    key = near_duplicates.text_key
    assert key("Hello, World!") == key("  hello world ") == key("HELLO -- world...") != key("hello worlds")
    assert key("the U.S. team") == key("the US team")


def test_a_resized_reencoded_picture_is_near_and_another_is_not(tmp_path):
    rng = np.random.default_rng(0)
    pixels = (np.linspace(0, 255, 64)[None, :, None] * np.ones((64, 1, 3)) + rng.normal(0, 40, (64, 64, 3)))
    picture = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    picture.resize((96, 96)).save(tmp_path / "copy.jpg", quality=70)
    other = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    hashes = {name: near_duplicates.image_hash(image) for name, image in
              (("a", picture), ("copy", Image.open(tmp_path / "copy.jpg")), ("b", other))}
    apart = {n: int((np.unpackbits(hashes["a"]) != np.unpackbits(h)).sum()) for n, h in hashes.items()}
    assert apart["copy"] <= near_duplicates.HASH_BITS < apart["b"]
    found = near_duplicates.near_images({"train": np.array([hashes["b"], hashes["a"]], dtype=np.int16),
                                         "test": np.array([hashes["copy"], hashes["b"] ^ 0xFF], dtype=np.int16)})
    assert found == [("test", 0, "train", 1, "image hash", apart["copy"])]


def test_image_splits_are_checked_by_hash(tmp_path, log):
    rng = np.random.default_rng(1)
    files = {}
    for name in ("a", "b", "c"):
        files[name] = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).resize((64, 64)).save(files[name])
    Image.open(files["b"]).resize((48, 48)).save(tmp_path / "b-small.png")
    def split(paths):
        return Dataset.from_dict({"image": [str(p) for p in paths]}).cast_column("image", ImageFeature())

    splits = {"train": split([files["a"], files["b"]]), "test": split([files["c"], tmp_path / "b-small.png"])}
    found = near_duplicates.check(splits, {"train": ["image"], "test": ["image"]}, tmp_path, tmp_path / "out", [])
    assert [(s, r, o, orow, how) for s, r, o, orow, how, _ in found] == [("test", 1, "train", 1, "image hash")]
    assert "1 test rows of 2 nearly in train (image hash)" in log.text
    assert (tmp_path / "out" / near_duplicates.FILE).is_file()


def _copy_test_rows(data, change) -> None:
    test_rows = list(csv.reader((data / "test.csv").open()))[1:]
    with (data / "train.csv").open("a", newline="") as f:
        writer = csv.writer(f)
        for i, (text, label) in enumerate(test_rows[:6]):
            if change(i, text) is not None:
                writer.writerow([change(i, text), label])


def test_near_and_exact_copies_of_test_rows_are_listed_apart(tiny_bert, tmp_path, log):
    data = write_topic_csvs(tmp_path / "data", n_train=30, n_eval=10)
    # rows 0-2 exactly (up to case), rows 3-5 with punctuation changed too
    _copy_test_rows(data, lambda i, text: text.upper() if i < 3 else f"{text.capitalize().replace(' ', ', ', 1)}!")
    out = tmp_path / "run"
    tunesuite.finetune("text-classification", str(tiny_bert), str(data), output_dir=str(out), **FAST)
    exact = {int(r["row"]) for r in csv.DictReader((out / duplicates.FILE).open()) if r["split"] == "test"}
    near = [r for r in csv.DictReader((out / near_duplicates.FILE).open()) if r["split"] == "test"]
    assert exact == {0, 1, 2}
    assert [(int(r["row"]), r["other_split"], int(r["other_row"]), r["how"]) for r in near] == \
        [(3, "train", 33, "text"), (4, "train", 34, "text"), (5, "train", 35, "text")]
    warnings = {r.getMessage() for r in log.records if r.levelno == logging.WARNING and "near-duplicates" in
                r.getMessage()}
    assert len(warnings) == 1 and "3 test rows of 10 nearly in train (text)" in warnings.pop()


def test_the_check_can_be_skipped(tiny_bert, tmp_path, log):
    data = write_topic_csvs(tmp_path / "data", n_train=30, n_eval=10)
    _copy_test_rows(data, lambda i, text: text)
    out = tmp_path / "run"
    tunesuite.finetune("text-classification", str(tiny_bert), str(data), output_dir=str(out),
                       skip_duplicate_check=True, **FAST)
    assert not (out / duplicates.FILE).exists() and not (out / near_duplicates.FILE).exists()
    assert "not checked (--skip-duplicate-check)" in log.text


def _tiny_classifier(path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=3), AutoTokenizer.from_pretrained(path)


def _reordered(text: str) -> str:
    """The same words, the first and last swapped: a paraphrase-like copy the text key does not catch."""
    words = text.split()
    words[0], words[-1] = words[-1], words[0]
    return " ".join(words)


def test_a_reordered_copy_is_near_by_embedding_and_unrelated_rows_are_not(tiny_bert, tmp_path, log, monkeypatch):
    rng = random.Random(3)
    topics = list(WORDS)
    train = [make_sentence(rng, topics[i % 3]) for i in range(30)]
    test = [_reordered(train[5]), *(make_sentence(rng, topics[i % 3]) for i in range(9))]
    assert near_duplicates.text_key(test[0]) != near_duplicates.text_key(train[5])
    splits = {"train": Dataset.from_dict({"text": train}), "test": Dataset.from_dict({"text": test})}
    columns = {"train": ["text"], "test": ["text"]}
    model, tokenizer = _tiny_classifier(tiny_bert)
    model.train()
    monkeypatch.setattr(near_duplicates, "EMBED_ROWS", 20)  # the cap: train's first 20 rows of 30 embedded
    found = near_duplicates.check(splits, columns, tmp_path, tmp_path / "out", [], model, tokenizer, 0.95)
    assert [p[:5] for p in found] == [("test", 0, "train", 5, "embedding")]
    assert model.training  # the check put the model back as it found it
    rows = list(csv.DictReader((tmp_path / "out" / near_duplicates.FILE).open()))
    assert len(rows) == 1 and float(rows[0]["similarity"]) >= 0.95
    assert abs(float(rows[0]["similarity"]) + float(rows[0]["distance"]) - 1) < 1e-3
    assert "1 test rows of 10 nearly in train (embedding)" in log.text
    assert "the first 20 of 30 train rows compared" in log.text
    for off in (0, None):  # off: nothing found, no file left behind
        assert near_duplicates.check(splits, columns, tmp_path, tmp_path / "out", [], model, tokenizer, off) == []
        assert not (tmp_path / "out" / near_duplicates.FILE).exists()


def test_a_run_lists_reordered_test_rows_by_embedding_when_asked(tiny_bert, tmp_path, log):
    data = write_topic_csvs(tmp_path / "data", n_train=30, n_eval=10)
    _copy_test_rows(data, lambda i, text: _reordered(text) if i < 3 else None)
    out = tmp_path / "run"
    tunesuite.finetune("text-classification", str(tiny_bert), str(data), output_dir=str(out),
                       near_duplicate_similarity=0.95, **FAST)
    near = [(r["split"], int(r["row"]), r["other_split"], int(r["other_row"]), r["how"])
            for r in csv.DictReader((out / near_duplicates.FILE).open())]
    assert near == [("test", 0, "train", 30, "embedding"), ("test", 1, "train", 31, "embedding"),
                    ("test", 2, "train", 32, "embedding")]
    assert "3 test rows of 10 nearly in train (embedding)" in log.text
    tunesuite.finetune("text-classification", str(tiny_bert), str(data), output_dir=str(tmp_path / "off"),
                       **FAST)  # off by default: it costs a pass of the model over the rows
    assert not (tmp_path / "off" / near_duplicates.FILE).exists()
