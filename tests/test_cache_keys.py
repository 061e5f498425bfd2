"""Decoded-audio and image-check caches key on the files they read: a file replaced after a first run (its
manifest unchanged) is read again, and the log says how many files changed."""

from __future__ import annotations

import os
import random

import numpy as np
import soundfile as sf
from asr_fixtures import RATE, tone_audio, write_tone_corpus
from audio_fixtures import PITCHES, pitch_clip, write_pitch_csvs
from conftest import cli_error
from image_fixtures import write_image_folder

import tunesuite
from tunesuite import data
from tunesuite.cli import parse_args
from tunesuite.data import cache_keys


def prepare(task, model, dataset, tmp_path, cache, *extra):
    """The task's preprocess in-process, the way a run does it, datasets' cache in `cache`."""
    cfg = parse_args(task, ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(tmp_path / "out"),
                            "--cache-dir", str(cache), *extra])
    raw = data.load_raw(cfg.data.dataset, cache_dir=str(cache))
    return task.data.preprocess(raw, task.data.load_processor(cfg.model.model, cfg), cfg)


def replace_keeping_time(path, samples) -> None:
    """Rewrite a wav with other audio of the same length and mtime second: only size/mtime_ns can tell."""
    before = os.stat(path)
    sf.write(path, samples, RATE)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1))


def test_a_replaced_wav_is_decoded_again(tiny_w2v, tmp_path, log):
    folder = write_pitch_csvs(tmp_path / "d", {"train": 6, "validation": 3})
    task = tunesuite.AUDIO_CLASSIFICATION
    first = prepare(task, tiny_w2v, folder, tmp_path, tmp_path / "cache")
    again = prepare(task, tiny_w2v, folder, tmp_path, tmp_path / "cache")
    assert np.array_equal(first.train[2]["input_values"], again.train[2]["input_values"])
    assert first.train.cache_files == again.train.cache_files  # the unchanged files: the cache is read
    assert "changed since the last run" not in log.text
    wav = folder / "wavs" / "train-2.wav"
    replace_keeping_time(wav, pitch_clip(PITCHES["high"], random.Random(7), seconds=len(sf.read(wav)[0]) / RATE))
    after = prepare(task, tiny_w2v, folder, tmp_path, tmp_path / "cache")
    assert np.allclose(after.train[2]["input_values"], sf.read(wav, dtype="float32")[0], atol=1e-6)
    assert not np.allclose(after.train[2]["input_values"], first.train[2]["input_values"])
    assert "train audio cache: 1 of 6 source files changed since the last run, decoding again" in log.text


def test_a_replaced_asr_wav_is_decoded_again_and_settings_count(tiny_w2v, tmp_path, log):
    folder = write_tone_corpus(tmp_path / "d", {"train": 5})
    first = prepare(tunesuite.ASR, tiny_w2v, folder, tmp_path, tmp_path / "cache", "--eval-split", "train")
    wav = folder / "wavs" / "train-1.wav"
    text = (folder / "train.csv").read_text().splitlines()[2].split(",")[1].lower()
    replace_keeping_time(wav, tone_audio(text, rng=random.Random(99)))  # same words, other loudness and noise
    after = prepare(tunesuite.ASR, tiny_w2v, folder, tmp_path, tmp_path / "cache", "--eval-split", "train")
    assert not np.allclose(after.train[1]["input_values"], first.train[1]["input_values"])
    assert "train audio cache: 1 of 5 source files changed since the last run, decoding again" in log.text
    prepare(tunesuite.ASR, tiny_w2v, folder, tmp_path, tmp_path / "cache", "--eval-split", "train",
            "--max-duration", "3")
    assert "train audio cache: settings changed since the last run (max_duration), decoding again" in log.text


def test_a_replaced_image_is_checked_again(capsys, tiny_vit, tmp_path, log):
    folder = write_image_folder(tmp_path / "pics", {"train": 2, "validation": 1})
    rows = ["path,label", *(f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(folder.glob("*/*/*.png")))]
    (tmp_path / "train.csv").write_text("\n".join(r for r in rows if "/train/" in r or r == rows[0]) + "\n")
    (tmp_path / "validation.csv").write_text("\n".join(r for r in rows if "/train/" not in r) + "\n")
    args = ["--cache-dir", str(tmp_path / "cache")]
    prepare(tunesuite.IMAGE_CLASSIFICATION, tiny_vit, tmp_path, tmp_path, tmp_path / "cache")
    (folder / "train" / "red" / "1.png").write_bytes(b"not a png any more")
    line = cli_error(capsys, tunesuite.IMAGE_CLASSIFICATION, ["--model", str(tiny_vit), "--dataset", str(tmp_path),
                                                              "--output-dir", str(tmp_path / "o"), *args])
    assert line.startswith(f"error: cannot read image {folder}/train/red/1.png")
    assert "train image cache: 1 of 6 source files changed since the last run, checking again" in log.text


def test_referenced_files_skip_cells_that_hold_their_bytes(tmp_path):
    from datasets import Dataset

    split = Dataset.from_list([{"a": {"bytes": b"RIFF", "path": "in-memory.wav"}},
                               {"a": {"bytes": None, "path": "x.wav"}}, {"a": {"bytes": None, "path": "/abs/y.wav"}},
                               {"a": None}])
    assert list(cache_keys.referenced_files(split, "a", tmp_path)) == [str(tmp_path / "x.wav"), "/abs/y.wav"]
    paths = Dataset.from_dict({"p": ["rel.png", "", None]})
    assert list(cache_keys.referenced_files(paths, "p", None)) == ["rel.png"]
