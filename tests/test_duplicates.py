"""Leakage across splits (train/duplicates.py): test rows copied into train are counted in the log and listed in
OUT/duplicates.csv; images and audio are compared by their decoded content, text after normalising."""

from __future__ import annotations

import csv
import logging
import shutil

import numpy as np
import soundfile as sf
from conftest import write_topic_csvs
from PIL import Image

import tunesuite
from tunesuite.train import duplicates


def test_test_rows_copied_into_train_are_found(tiny_bert, tmp_path, log):
    data = write_topic_csvs(tmp_path / "data", n_train=60, n_eval=20)
    test_rows = list(csv.reader((data / "test.csv").open()))[1:]
    with (data / "train.csv").open("a", newline="") as f:
        writer = csv.writer(f)
        for text, label in test_rows[:5]:
            writer.writerow([f"  {text.upper()}  ", label])  # case and whitespace differ: still the same text
    out = tmp_path / "run"
    tunesuite.finetune("text-classification", str(tiny_bert), str(data), output_dir=str(out), num_train_epochs=1,
                       save_strategy="no", eval_strategy="no", disable_tqdm=True)
    rows = list(csv.DictReader((out / duplicates.FILE).open()))
    leaked = [r for r in rows if r["split"] == "test" and r["other_split"] == "train"]
    assert sorted(int(r["row"]) for r in leaked) == [0, 1, 2, 3, 4]
    assert sorted(int(r["other_row"]) for r in leaked) == [60, 61, 62, 63, 64]
    warnings = {r.getMessage() for r in log.records if r.levelno == logging.WARNING and "duplicates" in r.getMessage()}
    assert len(warnings) == 1 and "5 test rows of 20 also in train" in warnings.pop()


def test_no_file_without_duplicates(tiny_bert, tmp_path):
    data = write_topic_csvs(tmp_path / "data", n_train=30, n_eval=10, seed=5)
    out = tmp_path / "run"
    tunesuite.finetune("text-classification", str(tiny_bert), str(data), output_dir=str(out), num_train_epochs=1,
                       save_strategy="no", eval_strategy="no", disable_tqdm=True)
    assert not (out / duplicates.FILE).exists()


def test_images_and_audio_compare_by_decoded_content(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "b.bmp")  # another name and format, the same picture
    other = pixels.copy()
    other[0, 0] = 255 - other[0, 0]
    Image.fromarray(other).save(tmp_path / "c.png")
    key = duplicates.value_key
    assert key("a.png", tmp_path) == key("b.bmp", tmp_path) != key("c.png", tmp_path)
    assert key(Image.open(tmp_path / "a.png"), tmp_path) == key("a.png", tmp_path)
    wave = np.sin(np.linspace(0, 50, 1600)).astype(np.float32) * 0.5
    sf.write(tmp_path / "x.wav", wave, 16000, subtype="FLOAT")
    sf.write(tmp_path / "y.flac", wave, 16000)  # 16-bit: decoded samples differ slightly
    sf.write(tmp_path / "z.wav", wave, 16000, subtype="FLOAT")
    assert key("x.wav", tmp_path) == key("z.wav", tmp_path) == key({"array": wave}, tmp_path)
    assert key("x.wav", tmp_path) != key("y.flac", tmp_path)
    assert key("Hello   World", tmp_path) == key("hello world", tmp_path) != key("hello worlds", tmp_path)


def test_find_pairs_each_later_row_with_its_first_earlier_copy():
    found = duplicates.find({"train": ["a", "b", "a"], "eval": ["c", "a"], "test": ["c", "d", "b"]})
    assert found == [("eval", 1, "train", 0), ("test", 0, "eval", 0), ("test", 2, "train", 1)]


FAST = {"save_strategy": "no", "eval_strategy": "no", "disable_tqdm": True, "num_train_epochs": 1}


def test_an_image_copied_under_another_name_is_found(tiny_vit, tmp_path):
    from image_fixtures import CLASSES, write_image_folder

    data = write_image_folder(tmp_path / "images", {"train": 4, "validation": 2, "test": 2})
    shutil.copy(data / "test" / CLASSES[0] / "1.png", data / "train" / CLASSES[0] / "copy.png")
    out = tmp_path / "run"
    tunesuite.finetune("image-classification", str(tiny_vit), str(data), mode="frozen", output_dir=str(out), **FAST)
    rows = list(csv.DictReader((out / duplicates.FILE).open()))
    assert [(r["split"], r["other_split"]) for r in rows] == [("test", "train")]


def test_a_clip_copied_under_another_name_is_found(tiny_w2v, tmp_path):
    from audio_fixtures import write_pitch_csvs

    data = write_pitch_csvs(tmp_path / "pitches", {"train": 12, "validation": 4, "test": 4})
    shutil.copy(data / "wavs" / "validation-2.wav", data / "wavs" / "leaked.wav")
    label = list(csv.reader((data / "validation.csv").open()))[3][1]
    with (data / "train.csv").open("a") as f:
        f.write(f"wavs/leaked.wav,{label}\n")
    out = tmp_path / "run"
    tunesuite.finetune("audio-classification", str(tiny_w2v), str(data), mode="frozen", output_dir=str(out), **FAST)
    rows = list(csv.DictReader((out / duplicates.FILE).open()))
    assert [(r["split"], r["row"], r["other_split"], r["other_row"]) for r in rows] == [("eval", "2", "train", "12")]
