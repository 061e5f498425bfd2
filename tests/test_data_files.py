"""Data files read by what they hold: a ragged CSV row or a bad JSON line is named by file and line, and one
stray table in a data folder (notes.json) neither switches the loader nor takes the blame."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from asr_fixtures import write_split
from conftest import cli_error
from image_fixtures import CLASSES, write_image_folder

import tunesuite
from tunesuite import data
from tunesuite.errors import TunesuiteError

ROWS = "text,label,source\n" + "".join(f"goal team {i},sport,web\noven salt {i},cooking,web\n" for i in range(4))


def load_error(path) -> str:
    with pytest.raises(TunesuiteError) as info:
        data.load_raw(str(path))
    return str(info.value)


def test_a_ragged_csv_row_names_file_and_line(capsys, tiny_bert, tmp_path):
    lines = ROWS.splitlines()
    lines[6] = "oven, salt and pan,cooking,web"  # line 7: an unquoted comma
    (tmp_path / "d").mkdir()
    (tmp_path / "d/train.csv").write_text("\n".join(lines) + "\n")
    argv = ["--model", str(tiny_bert), "--dataset", str(tmp_path / "d"), "--output-dir", str(tmp_path / "o")]
    line = cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, argv)
    assert line == (f"error: {tmp_path}/d/train.csv line 7: 4 fields where the header has 3 (an unquoted comma?); "
                    "quote the field or fix the row")


def test_a_tsv_row_and_a_multi_line_quoted_field_count_lines_right(tmp_path):
    (tmp_path / "a.tsv").write_text('text\tlabel\n"two\nlines"\tsport\nok\tsport\ttoo many\n')
    assert load_error(tmp_path / "a.tsv") == (f"{tmp_path}/a.tsv line 4: 3 fields where the header has 2 (an unquoted "
                                              "tab?); quote the field or fix the row")


def test_a_bad_jsonl_line_names_file_and_line(tmp_path):
    rows = [json.dumps({"text": f"goal {i}", "label": "sport"}) for i in range(11)]
    rows.insert(11, '{"text": "oven salt" "label": "cooking"}')  # line 12: a missing comma
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    assert load_error(tmp_path / "train.jsonl") == (f"{tmp_path}/train.jsonl line 12: not valid JSON (Expecting ',' "
                                                    "delimiter: column 22); fix or remove the line")


def test_a_broken_json_document_names_its_line(tmp_path):
    (tmp_path / "train.json").write_text('[{"text": "goal", "label": "sport"},\n {"text": "oven", "label": }]\n')
    assert load_error(tmp_path / "train.json").startswith(f"{tmp_path}/train.json line 2: not valid JSON (Expecting "
                                                          "value: column 28)")


def test_a_stray_json_beside_split_files_is_left_out(tmp_path, log):
    (tmp_path / "train.csv").write_text(ROWS)
    (tmp_path / "test.csv").write_text(ROWS)
    (tmp_path / "notes.json").write_text('{"author": "me", "rows": 8}')
    raw = data.load_raw(str(tmp_path))
    assert set(raw) == {"train", "test"} and raw["train"].column_names == ["text", "label", "source"]
    assert f"data folder {tmp_path}: left out notes.json (not named like a split, as test.csv, train.csv are)" \
        in log.text


def test_split_files_of_different_kinds_each_load(tmp_path):
    (tmp_path / "train.csv").write_text(ROWS)
    (tmp_path / "validation.jsonl").write_text(json.dumps({"text": "goal", "label": "sport", "source": "x"}) + "\n")
    raw = data.load_raw(str(tmp_path))
    assert (len(raw["train"]), len(raw["validation"])) == (8, 1)


def test_two_files_for_one_split_are_refused(tmp_path):
    (tmp_path / "train.csv").write_text(ROWS)
    (tmp_path / "train.jsonl").write_text(json.dumps({"text": "goal", "label": "sport"}) + "\n")
    assert load_error(tmp_path) == f"{tmp_path} holds 2 files for the 'train' split (train.csv, train.jsonl); keep one"


def test_image_manifests_with_a_stray_json_are_the_data(tmp_path):
    """Not an image folder of no labels: the manifests name the images and their classes."""
    pics = write_image_folder(tmp_path / "pics", {"train": 2, "validation": 1})
    (tmp_path / "imgs").mkdir()
    for split in ("train", "validation"):
        rows = []
        for picture in sorted(pics.glob(f"{split}/*/*")):
            name = f"{split}-{picture.parent.name}-{picture.name}"
            (tmp_path / "imgs" / name).write_bytes(picture.read_bytes())
            rows.append(f"imgs/{name},{picture.parent.name}")
        (tmp_path / f"{split}.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    shutil.rmtree(pics)
    (tmp_path / "labels.json").write_text('{"red": "warm"}')
    raw = data.load_raw(str(tmp_path))
    assert raw["train"].column_names == ["path", "label"] and sorted(set(raw["train"]["label"])) == sorted(CLASSES)


def test_a_metadata_folder_with_a_stray_json_keeps_its_metadata(tmp_path):
    pics = write_image_folder(tmp_path, {"train": 1})
    rows = [f"{p.relative_to(pics)},{p.parent.name}" for p in sorted(pics.glob("train/*/*"))]
    (tmp_path / "metadata.csv").write_text("file_name,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "info.json").write_text("{}")
    raw = data.load_raw(str(tmp_path))
    assert list(raw) == ["train"] and raw["train"]["file_name"] == [r.split(",")[0] for r in rows]


def test_an_asr_folder_with_a_stray_json_loads(tmp_path):
    write_split(tmp_path, "train", ["ab", "cd"], random.Random(0))
    (tmp_path / "speakers.json").write_text('{"spk1": "f"}')
    raw = data.load_raw(str(tmp_path))
    assert raw["train"]["path"] == ["wavs/train-0.wav", "wavs/train-1.wav"]
