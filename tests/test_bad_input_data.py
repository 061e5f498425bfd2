"""Data-side bad input (issue 10): one `error:` line naming the file/split and the fix (exit 2), or handled
(scaled, padded) and logged."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from asr_fixtures import RATE, tone_audio, write_split
from conftest import cli_error
from image_fixtures import write_image_folder
from PIL import Image

import tunesuite
from tunesuite import data
from tunesuite.cli import main as cli_main
from tunesuite.data import audio, image
from tunesuite.errors import TunesuiteError


def write_rows(path: Path, header: list[str], rows: list[list], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows([header, *rows])
    return path


def argv(model, dataset, tmp_path, *extra) -> list[str]:
    return ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(tmp_path / "out"),
            "--max-steps", "1", "--save-strategy", "no", "--disable-tqdm", "true", *extra]


TWO_CLASSES = [["goal team", "sport"], ["oven salt", "cooking"]] * 4


def header_only(tmp_path: Path) -> tuple[Path, list[str]]:
    write_rows(tmp_path / "d/validation.csv", ["text", "label"], TWO_CLASSES)
    return write_rows(tmp_path / "d/train.csv", ["text", "label"], []).parent, [
        f"the train split file {tmp_path / 'd/train.csv'} holds no rows (header only); add data rows"]


def zero_bytes(tmp_path: Path) -> tuple[Path, list[str]]:
    (tmp_path / "empty.csv").write_bytes(b"")
    return tmp_path / "empty.csv", [f"{tmp_path / 'empty.csv'} holds no rows (empty)"]


def latin1(tmp_path: Path) -> tuple[Path, list[str]]:
    path = write_rows(tmp_path / "l.csv", ["text", "label"], [["goal", "sport"], ["café oven", "cooking"]], "latin-1")
    return path, [f"{path} is not UTF-8 text (byte 0xe9 on line 3", "re-save it as UTF-8"]


def one_class(tmp_path: Path) -> tuple[Path, list[str]]:
    path = write_rows(tmp_path / "one.csv", ["text", "label"], [["goal team", "sport"]] * 6)
    return path, [f"the train split of {path} holds one class ('sport') in column 'label'; a classifier needs at "
                  "least two"]


def empty_text(tmp_path: Path) -> tuple[Path, list[str]]:
    path = write_rows(tmp_path / "t/train.csv", ["text", "label"], [*TWO_CLASSES, ["", "sport"]])
    write_rows(tmp_path / "t/validation.csv", ["text", "label"], TWO_CLASSES)
    return path.parent, [f"train split ({path}), row 8, column 'text': expected text, got None; fill or drop"]


def missing_label(tmp_path: Path) -> tuple[Path, list[str]]:
    write_rows(tmp_path / "m/train.csv", ["text", "label"], TWO_CLASSES)
    path = write_rows(tmp_path / "m/validation.csv", ["text", "label"], [*TWO_CLASSES, ["goal", ""]])
    return path.parent, [f"eval split ({path}), row 8, column 'label': missing label; fill or drop the row"]


def no_train_rows_left(tmp_path: Path) -> tuple[Path, list[str]]:
    path = write_rows(tmp_path / "n.csv", ["text", "label"], TWO_CLASSES)
    return path, [f"the train split is empty ({path}); check --train-split and --max-*-samples"], \
        ["--max-train-samples", "0"]


@pytest.mark.parametrize("case", [header_only, zero_bytes, latin1, one_class, empty_text, missing_label,
                                  no_train_rows_left])
def test_text_data_errors(capsys, tiny_bert, tmp_path, case):
    dataset, expected, *extra = case(tmp_path)
    line = cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, argv(tiny_bert, dataset, tmp_path, *sum(extra, [])))
    assert all(text in line for text in expected), line


def test_one_class_is_fine_for_regression_and_multi_label(tmp_path):
    from datasets import ClassLabel, Dataset, Features

    multi = {"train": Dataset.from_dict({"tags": [["sport"], ["sport"]]})}
    assert data.label_names(multi, "tags", "multi_label_classification") == ["sport"]  # a yes/no tag
    single = {"train": Dataset.from_dict({"label": ["a", "a"]})}
    with pytest.raises(TunesuiteError, match=r"holds one class \('a'\)"):
        data.label_names(single, "label", "single_label_classification")
    typed = {"train": Dataset.from_dict({"label": [1, 1]}, features=Features({"label": ClassLabel(names=["x", "y"])}))}
    with pytest.raises(TunesuiteError, match=r"the train split of d holds one class \('y'\)"):
        data.label_names(typed, "label", "single_label_classification", "d")


def gradient_16bit(path: Path) -> Path:
    Image.fromarray(np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)).save(path)
    return path


def test_16_bit_grayscale_is_scaled_not_clipped(tiny_vit, tmp_path):
    path = gradient_16bit(tmp_path / "g.png")
    assert Image.open(path).mode == "I;16"
    pixels = np.asarray(image.open_image(path))
    assert pixels.shape == (32, 32, 3) and pixels.min() == 0 and pixels.max() == 255
    assert (pixels == 255).mean() < 0.01 and len(np.unique(pixels)) > 200  # was 99.6% white
    folder = write_image_folder(tmp_path / "data", {"train": 2, "validation": 1})
    for png in folder.glob("*/*/*.png"):
        gradient_16bit(png)
    result = tunesuite.finetune("image-classification", str(tiny_vit), str(folder), output_dir=str(tmp_path / "o"),
                                max_steps=1, save_strategy="no", disable_tqdm=True)
    assert "eval_accuracy" in result
    batch = tunesuite.load(tmp_path / "o").processor(image.open_image(path), return_tensors="pt")
    assert batch["pixel_values"].std() > 0.3  # a gradient reaches the model, not a white square


def test_image_data_errors(capsys, tiny_vit, tmp_path):
    folder = write_image_folder(tmp_path / "data", {"train": 2, "validation": 1})
    (folder / "train/red/notes.png").write_text("not an image")
    line = cli_error(capsys, tunesuite.IMAGE_CLASSIFICATION, argv(tiny_vit, folder, tmp_path))
    assert f"cannot read image {folder / 'train/red/notes.png'}: " in line and "--skip-bad-files" in line
    (folder / "train/red/notes.png").unlink()
    manifest = write_rows(tmp_path / "one.csv", ["path", "label"], [[str(p), "red"] for p in folder.glob("*/red/*")])
    line = cli_error(capsys, tunesuite.IMAGE_CLASSIFICATION, argv(tiny_vit, manifest, tmp_path))
    assert f"the train split of {manifest} holds one class ('red') in column 'label'" in line
    for extra in ("green", "blue"):  # an image folder with one class folder in train: datasets gives no labels
        shutil.rmtree(folder / "train" / extra)
    line = cli_error(capsys, tunesuite.IMAGE_CLASSIFICATION, argv(tiny_vit, folder, tmp_path))
    assert f"the train split of {folder / 'train'} holds one class ('red'); a classifier needs at least two" in line
    shutil.rmtree(folder / "validation")
    line = cli_error(capsys, tunesuite.IMAGE_CLASSIFICATION, argv(tiny_vit, folder, tmp_path))
    assert "holds one class ('red')" in line


def test_digit_folders_are_rebuilt_without_stale_classes(tmp_path):
    from tunesuite.demos.corpora import write_digits_imagefolder

    out = tmp_path / "digits"
    write_digits_imagefolder(out, (0, 1, 2), {"train": 3, "validation": 2, "test": 2})
    write_digits_imagefolder(out, (5, 6), {"train": 2, "validation": 1})
    assert sorted(p.name for p in out.iterdir()) == ["train", "validation"]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["5", "6"]
    assert len(list(out.glob("*/*/*.png"))) == 2 * 3 and not (tmp_path / "digits.building").exists()


def test_clips_shorter_than_the_receptive_field_are_padded(tiny_w2v, tmp_path, log):
    folder = tmp_path / "d"
    rng = random.Random(7)
    write_split(folder, "train", ["ab", "cd", "abc", "dc"], rng)
    write_split(folder, "validation", ["ab", "a"], rng)
    sf.write(folder / "wavs/tiny.wav", tone_audio("a")[: 3 * RATE // 1000], RATE)  # 3 ms, 48 samples
    write_rows(folder / "validation.csv", ["path", "text"], [["wavs/validation-0.wav", "ab"], ["wavs/tiny.wav", "a"]])
    result = tunesuite.finetune("asr", str(tiny_w2v), str(folder), output_dir=str(tmp_path / "o"), max_steps=1,
                                per_device_eval_batch_size=1, save_strategy="no", disable_tqdm=True)
    assert "eval_wer" in result
    assert "eval split: padded 1 clip(s) shorter than 85 samples (5.3 ms" in log.text
    log.clear()
    transcript = tunesuite.predict(tmp_path / "o", [str(folder / "wavs/tiny.wav")])  # crashed the conv encoder
    assert isinstance(transcript[0]["text"], str)
    assert log.records[-1].getMessage().startswith("padded 1 clip(s) shorter than 85 samples")


def test_truncated_wav_warns_with_the_file_name(tmp_path, log):
    path = tmp_path / "cut.wav"
    sf.write(path, tone_audio("ab"), RATE, subtype="PCM_16")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert 0 < len(audio.load(str(path), RATE)) < len(tone_audio("ab"))  # what is there is used
    assert f"{path}: truncated WAV, its header promises {len(tone_audio('ab'))} frames but the file holds" in log.text
    log.clear()
    audio.load(whole, RATE)
    assert "truncated" not in log.text


def test_undecodable_audio_in_predict(tiny_w2v, tmp_path, capsys):
    (tmp_path / "bad.wav").write_bytes(b"RIFF garbage")
    out = tmp_path / "run"
    tunesuite.ASR.data.load_processor(str(tiny_w2v), None).save_pretrained(out)  # a minimal "finished run"
    (out / "run_config.yaml").write_text("task: automatic-speech-recognition\n")
    from transformers import AutoModelForCTC

    AutoModelForCTC.from_pretrained(tiny_w2v).save_pretrained(out)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli_main(["predict", str(out), str(tmp_path / "bad.wav")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err and err.count("error:") == 1
    assert err.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'bad.wav'}: cannot read audio (")


def test_filters_leaving_no_audio_name_the_file(tiny_w2v, tmp_path, capsys):
    manifest = write_split(tmp_path / "d", "train", ["ab", "cd"], random.Random(8))
    line = cli_error(capsys, tunesuite.ASR, argv(tiny_w2v, manifest, tmp_path, "--min-duration", "60",
                                                 "--eval-split", "train"))
    assert f"no usable utterances left in the train split ({manifest}; dropped: " in line
    assert "check --min-duration/--max-duration" in line
