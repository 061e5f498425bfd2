"""Speech data without training: normalisation, vocabulary, audio decoding and resampling, filters, errors."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from asr_fixtures import RATE, needs_espeak, tone_audio, write_split
from conftest import cli_error

import tunesuite
from tunesuite import data
from tunesuite.cli import parse_args
from tunesuite.data import audio
from tunesuite.tasks import ctc


def prepare(model, dataset, tmp_path, *extra):
    """ASR.data.preprocess on a dataset, the way a run does it (no model is loaded)."""
    cfg = parse_args(tunesuite.ASR, ["--model", str(model), "--dataset", str(dataset), "--output-dir",
                                     str(tmp_path / "out"), "--eval-split", "train", *extra])
    raw = data.load_raw(cfg.data.dataset)
    return tunesuite.ASR.data.preprocess(raw, tunesuite.ASR.data.load_processor(cfg.model.model, cfg), cfg)


def write_rows(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "text"])
        writer.writerows(rows)
    return path


def sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.abs(np.fft.rfft(samples)).argmax()])


def test_normalise_and_vocab():
    normalise = ctc.normaliser(ctc.DEFAULT_CHARS_TO_IGNORE)
    assert normalise("  Hello, World!  Don’t  STOP. ") == "hello world don't stop"
    assert ctc.normaliser(["x"], lowercase=False)("Max  Mix") == "Ma Mi"
    vocab = ctc.build_vocab(["hello world", "don't"])
    assert list(vocab)[:3] == ["<pad>", "<unk>", "|"] and list(vocab.values()) == list(range(len(vocab)))
    assert list(vocab)[3:] == sorted(set("helloworlddon't") - {" "})
    tokenizer = ctc.make_tokenizer(vocab)
    assert len(tokenizer) == len(vocab) and tokenizer.pad_token_id == 0
    ids = tokenizer("hello world").input_ids
    assert ids[5] == vocab["|"] and tokenizer.decode(ids, group_tokens=False) == "hello world"
    h, e, o = vocab["h"], vocab["e"], vocab["o"]
    assert tokenizer.decode([h, h, 0, e, e, 0, 0, o]) == "heo"  # CTC: repeats merge, blanks drop
    assert tokenizer.decode([o, 0, o]) == "oo"  # a blank separates a real double letter
    assert ctc.greedy_ids(np.array([[h, -100, -100]]), 0) == [[h, 0, 0]]


def test_output_frames_match_the_model(tiny_w2v):
    from transformers import Wav2Vec2ForCTC

    model = Wav2Vec2ForCTC.from_pretrained(tiny_w2v)
    for n in (0, 9, 10, 400, 16000, 12345):
        expected = max(int(model._get_feat_extract_output_lengths(n)), 0)
        assert ctc.output_frames(n, model.config) == expected, n
    assert ctc.frames_needed([5, 5, 6]) == 4 and ctc.frames_needed([5, 6, 5]) == 3


@pytest.mark.parametrize("rate", [8000, 44100])
def test_resampling_keeps_pitch_and_duration(tmp_path, rate):
    path = tmp_path / f"tone-{rate}.wav"
    sf.write(path, sine(440, 0.5, rate), rate)
    samples = audio.load(path, RATE)
    assert samples.dtype == np.float32 and abs(len(samples) - RATE // 2) <= 2
    assert abs(peak_hz(samples, RATE) - 440) < 5


def test_audio_cells_of_every_kind(tmp_path):
    left, right = sine(300, 0.25, 8000), sine(900, 0.25, 8000)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 8000)
    mono = audio.load(tmp_path / "stereo.wav", 8000)
    assert np.allclose(mono, (left + right) / 2, atol=1e-4)  # channels are averaged
    raw = (tmp_path / "stereo.wav").read_bytes()
    assert np.allclose(audio.load(raw, 8000), mono)  # bytes
    assert np.allclose(audio.load({"bytes": raw, "path": "x.wav"}, 8000), mono)  # a Hub dataset's undecoded cell
    assert np.allclose(audio.load({"path": "stereo.wav"}, 8000, base_dir=tmp_path), mono)  # relative path
    decoded = audio.load({"array": np.stack([left, right]), "sampling_rate": 8000}, RATE)  # (channels, samples)
    assert len(decoded) == 4000 and np.allclose(decoded, audio.resample(mono, 8000, RATE), atol=1e-3)
    with pytest.raises(audio.AudioError, match="needs its 'sampling_rate'"):
        audio.decode({"array": [0.0, 0.1]})


def test_corrupt_and_missing_audio_name_the_file(tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(audio.AudioError, match=r"broken\.wav: cannot read audio"):
        audio.load(tmp_path / "broken.wav", RATE)
    with pytest.raises(audio.AudioError, match=r"nope\.wav: cannot read audio"):
        audio.load("nope.wav", RATE, base_dir=tmp_path)


def test_vocabulary_reused_when_it_covers_the_data(tiny_w2v, tmp_path, log):
    rng = random.Random(1)
    write_split(tmp_path / "d", "train", ["ab cd", "dab", "c"], rng)
    prepared = prepare(tiny_w2v, tmp_path / "d/train.csv", tmp_path)
    assert "using the model's own vocabulary" in log.text
    assert prepared.processor.tokenizer.get_vocab() == ctc.make_tokenizer(ctc.build_vocab(["abcd"])).get_vocab()
    assert prepared.model_kwargs["vocab_size"] == 7 and prepared.model_kwargs["pad_token_id"] == 0
    row = prepared.train[0]
    assert row["length"] == len(row["input_values"]) and row["labels"].tolist() == [3, 4, 2, 5, 6]
    assert prepared.raw["eval"][0]["reference"] == "ab cd"  # lower-cased like the vocabulary


def test_new_vocabulary_resizes_the_head(tiny_w2v, tmp_path, log):
    write_split(tmp_path / "d", "train", ["ab ee", "e"], random.Random(2))
    prepared = prepare(tiny_w2v, tmp_path / "d/train.csv", tmp_path)
    assert "lacks 'e'" in log.text and "resizing the CTC head from 7 to 6 outputs" in log.text
    assert list(prepared.processor.tokenizer.get_vocab()) == ["<pad>", "<unk>", "|", "a", "b", "e"]
    assert prepared.model_kwargs["vocab_size"] == 6


def test_chars_to_ignore_can_be_empty(tiny_w2v, tmp_path):
    """`--chars-to-ignore ""` keeps every character, and the saved run config repeats that."""
    from tunesuite.config.resolve import save_run_config

    folder = tmp_path / "d"
    write_split(folder, "train", ["ab", "cd"], random.Random(8))
    write_rows(folder / "train.csv", [["wavs/train-0.wav", "a-b!"], ["wavs/train-1.wav", "c, d"]])
    assert prepare(tiny_w2v, folder / "train.csv", tmp_path).raw["eval"]["reference"] == ["ab", "c d"]
    prepared = prepare(tiny_w2v, folder / "train.csv", tmp_path, "--chars-to-ignore", "")
    assert prepared.raw["eval"]["reference"] == ["a-b!", "c, d"]
    assert {"-", "!", ","} <= set(prepared.processor.tokenizer.get_vocab())
    cfg = parse_args(tunesuite.ASR, ["--model", "m", "--dataset", "d", "--chars-to-ignore", ""])
    save_run_config(cfg, tmp_path / "run_config.yaml")
    again = parse_args(tunesuite.ASR, ["--config", str(tmp_path / "run_config.yaml")])
    assert ctc.normaliser(again.task_args.chars_to_ignore)("A-b, C!") == "a-b, c!"


def test_tsv_manifests_are_read_with_tabs(tiny_w2v, tmp_path):
    """path<TAB>text manifests: a single file, a folder of .tsv splits, or .tsv next to .csv."""
    folder = tmp_path / "d"
    write_split(folder, "train", ["ab", "cd"], random.Random(9))
    write_split(folder, "validation", ["dc"], random.Random(10))
    (folder / "train.csv").unlink()
    (folder / "train.tsv").write_text("path\ttext\nwavs/train-0.wav\tA, B\nwavs/train-1.wav\tc d\n")
    raw = data.load_raw(str(folder / "train.tsv"))
    assert raw["train"].column_names == ["path", "text"] and raw["train"]["text"] == ["A, B", "c d"]

    def check_folder():
        raw = data.load_raw(str(folder))
        assert raw["train"]["text"] == ["A, B", "c d"] and raw["validation"].column_names == ["path", "text"]
        prepared = prepare(tiny_w2v, folder, tmp_path, "--eval-split", "validation")
        assert prepared.train["reference"] == ["a b", "c d"] and prepared.raw["eval"]["reference"] == ["dc"]

    check_folder()  # train.tsv next to validation.csv
    rows = (folder / "validation.csv").read_text()
    (folder / "validation.csv").unlink()
    (folder / "validation.tsv").write_text(rows.replace(",", "\t"))
    check_folder()  # all .tsv


def test_infeasible_labels_are_dropped_from_train_and_counted(tiny_w2v, tmp_path, log):
    folder = tmp_path / "d"
    write_split(folder, "train", ["ab", "ba", "abc"], random.Random(3))
    sf.write(folder / "wavs" / "short.wav", tone_audio("a")[: RATE // 50], RATE)  # 20 ms: 3 output frames
    rows = list(csv.reader((folder / "train.csv").open()))[1:] + [["wavs/short.wav", "abcd abcd"]]
    write_rows(folder / "train.csv", rows)
    prepared = prepare(tiny_w2v, folder / "train.csv", tmp_path)
    assert len(prepared.train) == 3 and "short.wav" not in prepared.train["path"]
    assert "train split: dropped 1 of 4 utterances (1 transcript longer than the model's output frames)" in log.text
    assert len(prepared.eval) == 4  # evaluation keeps it: it counts against WER instead of being hidden


def test_duration_filter(tiny_w2v, tmp_path, log):
    write_split(tmp_path / "d", "train", ["a", "ab cd", "abcd abcd"], random.Random(4))
    prepared = prepare(tiny_w2v, tmp_path / "d/train.csv", tmp_path, "--min-duration", "0.3",
                       "--max-duration", "0.7")
    assert prepared.train["reference"] == ["ab cd"]
    assert "dropped 2 of 3 utterances (2 outside --min-duration/--max-duration)" in log.text


def run_cli(capsys, argv: list[str]) -> str:
    return cli_error(capsys, tunesuite.ASR, argv)


def cli_args(model, dataset, tmp_path, *extra):
    return ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(tmp_path / "out"),
            "--eval-split", "train", "--max-steps", "1", *extra]


def test_corrupt_audio_error_and_skip(tiny_w2v, tmp_path, capsys, log):
    folder = tmp_path / "d"
    write_split(folder, "train", ["ab", "cd"], random.Random(5))
    (folder / "wavs" / "broken.wav").write_bytes(b"garbage")
    write_rows(folder / "train.csv", [["wavs/train-0.wav", "ab"], ["wavs/broken.wav", "cd"], ["wavs/train-1.wav", "c"]])
    line = run_cli(capsys, cli_args(tiny_w2v, folder / "train.csv", tmp_path))
    assert f"train split, row 1, column 'path': {folder / 'wavs/broken.wav'}: cannot read audio" in line
    assert "--skip-bad-files" in line
    prepared = prepare(tiny_w2v, folder / "train.csv", tmp_path, "--skip-bad-files")
    assert len(prepared.train) == 2 and "dropped 1 of 3 utterances (1 unreadable audio)" in log.text


def test_empty_transcript_error_and_skip(tiny_w2v, tmp_path, capsys):
    folder = tmp_path / "d"
    write_split(folder, "train", ["ab", "cd", "a"], random.Random(6))
    write_rows(folder / "train.csv", [["wavs/train-0.wav", "ab"], ["wavs/train-1.wav", " ?! "],
                                      ["wavs/train-2.wav", "a"]])
    line = run_cli(capsys, cli_args(tiny_w2v, folder / "train.csv", tmp_path))
    assert (f"train split, row 1 ({folder / 'wavs/train-1.wav'}): empty transcript in column 'text' "
            "(after normalisation); fill or drop the row, or pass --skip-bad-files") in line
    assert len(prepare(tiny_w2v, folder / "train.csv", tmp_path, "--skip-bad-files").train) == 2


def test_column_errors(tiny_w2v, tone_data, tmp_path, capsys):
    line = run_cli(capsys, cli_args(tiny_w2v, tone_data, tmp_path, "--text-column", "sentence"))
    assert "column 'sentence' not found in the train split (columns: path, text); set --text-column" in line
    (tmp_path / "odd.csv").write_text("clip,words\nx.wav,ab\n")
    line = run_cli(capsys, cli_args(tiny_w2v, tmp_path / "odd.csv", tmp_path))
    assert "no audio column found (columns: clip, words); set --audio-column" in line


def test_not_a_ctc_model(tiny_bert, tone_data, tmp_path, capsys):
    line = run_cli(capsys, cli_args(tiny_bert, tone_data, tmp_path))
    assert f"--model {tiny_bert}: a bert model has no CTC front end; the asr task fine-tunes wav2vec2-family" in line


def test_metadata_folder_and_hub_style_datasets(tiny_w2v, tmp_path):
    from datasets import Audio, Dataset

    folder = tmp_path / "folder"
    write_split(folder, "metadata", ["ab", "cd", "ba"], random.Random(7))
    prepared = prepare(tiny_w2v, folder, tmp_path)  # a folder of wavs + metadata.csv: the train split
    assert len(prepared.train) == 3
    waves = [tone_audio("ab"), tone_audio("dc")]
    buffers = []
    for wave in waves:
        buffer = io.BytesIO()
        sf.write(buffer, wave, RATE, format="WAV", subtype="FLOAT")
        buffers.append(buffer.getvalue())
    as_bytes = Dataset.from_dict({"audio": [{"bytes": b, "path": None} for b in buffers], "sentence": ["AB", "DC"]})
    as_bytes.cast_column("audio", Audio()).save_to_disk(str(tmp_path / "hub-bytes"))
    as_arrays = Dataset.from_dict({"audio": [{"array": w, "sampling_rate": RATE} for w in waves],
                                   "transcription": ["ab", "dc"]})
    as_arrays.save_to_disk(str(tmp_path / "hub-arrays"))
    for name in ("hub-bytes", "hub-arrays"):
        prepared = prepare(tiny_w2v, tmp_path / name, tmp_path)
        assert prepared.train["reference"] == ["ab", "dc"], name
        assert np.allclose(prepared.train[0]["input_values"][:50],
                           prepared.processor.feature_extractor(waves[0], sampling_rate=RATE).input_values[0][:50],
                           atol=1e-4), name


@needs_espeak
def test_speech_corpus_writes_real_speech(tmp_path):
    from tunesuite.demos.speech_corpus import Utterance, write_corpus

    folder = write_corpus(tmp_path / "c", {"train": [Utterance("one two", "en-us+f1", 170, 50)],
                                           "test": [Utterance("nine", "en-gb-scotland+m7", 150, 40)]})
    rows = list(csv.DictReader((folder / "train.csv").open()))
    assert rows == [{"path": "wavs/train-00000.wav", "text": "one two", "voice": "en-us+f1", "speed": "170",
                     "pitch": "50"}]
    samples = audio.load(folder / rows[0]["path"], RATE)
    assert 0.4 < len(samples) / RATE < 2.0 and np.abs(samples).max() > 0.1
    assert np.abs(samples[-RATE // 10 :]).max() > 0.01 * np.abs(samples).max()  # espeak's final pause trimmed
    stamp = (folder / ".corpus").read_text()
    write_corpus(tmp_path / "c", {"train": [Utterance("one two", "en-us+f1", 170, 50)],
                                  "test": [Utterance("nine", "en-gb-scotland+m7", 150, 40)]})
    assert (folder / ".corpus").read_text() == stamp  # same spec: reused, not rewritten



@pytest.mark.parametrize("mode", ["full", "frozen", "lora", "prompt"])
def test_presets_parse(mode, tmp_path):
    import yaml

    preset = Path(__file__).resolve().parents[1] / f"tasks/configs/wav2vec2_{mode}.yaml"
    cfg = parse_args(tunesuite.ASR, ["--config", str(preset), "--dataset", "x", "--output-dir", str(tmp_path)])
    values = yaml.safe_load(preset.read_text())
    assert values["task"] == "asr" and cfg.task == "automatic-speech-recognition"  # the short name is an alias
    assert cfg.run.mode == mode and cfg.training.learning_rate == values["learning_rate"]
    assert cfg.training.train_sampling_strategy == "group_by_length" and cfg.training.length_column_name == "length"
    assert tunesuite.get_task("asr") is tunesuite.get_task("automatic-speech-recognition") is tunesuite.ASR
