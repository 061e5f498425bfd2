"""The speech task's sequence-to-sequence path on a tiny converted Whisper (whisper_fixtures.py): every mode trains
the parameters it should (by name), a finished run reloads to the same generated transcripts (Python and
`tunesuite predict`), training lowers the loss, and prompt mode refuses a deep prompt in one line."""

from __future__ import annotations

import json

import pytest
from asr_fixtures import SEED, write_tone_corpus
from conftest import recording_trainable
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

import tunesuite
from tunesuite.errors import TunesuiteError
from tunesuite.tasks import ctc

FAST = {"max_steps": 3, "per_device_train_batch_size": 4, "warmup_steps": 0, "disable_tqdm": True, "seed": SEED,
        "save_strategy": "no", "eval_strategy": "no", "do_predict": True, "learning_rate": 1e-3}
ENCODER, DECODER_LAYER, FINAL_NORM = "model.encoder.", "model.decoder.layers.0.", "model.decoder.layer_norm."


@pytest.fixture(scope="module")
def whisper_tones(tmp_path_factory):
    return write_tone_corpus(tmp_path_factory.mktemp("whisper-tones"), {"train": 12, "validation": 4, "test": 4})


@pytest.fixture(scope="module")
def whisper_runs(tiny_whisper_model, whisper_tones, tmp_path_factory):  # noqa: F811
    """mode -> (result, out, trainable names right after the mode), each run once per module."""
    root, done = tmp_path_factory.mktemp("whisper-runs"), {}

    def run(mode: str, **flags):
        key = (mode, *sorted(flags.items()))
        if key not in done:
            out = root / f"{mode}-{len(done)}"
            with recording_trainable(mode) as seen:
                result = tunesuite.finetune("asr", str(tiny_whisper_model), str(whisper_tones), mode=mode,
                                            output_dir=str(out), **{**FAST, **flags})
            done[key] = (result, out, seen["trainable"])
        return done[key]

    return run


def _is(names: set[str], prefix: str) -> set[str]:
    return {n for n in names if n.startswith(prefix)}


@pytest.mark.parametrize("mode", ["full", "frozen", "bitfit", "lora"])
def test_each_mode_trains_what_it_should(whisper_runs, mode):
    result, _, trainable = whisper_runs(mode)
    assert result["test_wer"] >= 0 and result["trainable_params"] > 0
    if mode == "full":
        assert _is(trainable, ENCODER) and _is(trainable, DECODER_LAYER)
    elif mode == "frozen":  # the encoder and every decoder layer fixed; the decoder's final norm trains
        assert trainable == {FINAL_NORM + "weight", FINAL_NORM + "bias"}
    elif mode == "bitfit":
        assert FINAL_NORM + "weight" in trainable  # the head trains whole
        assert all(n.endswith(".bias") for n in trainable - {FINAL_NORM + "weight"})
        assert not any("k_proj" in n for n in trainable)  # Whisper's k projections have no bias
    else:  # LoRA on q_proj / v_proj, encoder and decoder, plus a trained copy of the final norm
        adapted = {n for n in trainable if "lora_" in n}
        assert adapted and all(("q_proj" in n or "v_proj" in n) for n in adapted)
        assert any(".encoder." in n for n in adapted) and any(".decoder." in n for n in adapted)
        assert trainable - adapted and all("layer_norm" in n for n in trainable - adapted)


def test_trainable_layers_counts_decoder_layers(whisper_runs):
    _, _, trainable = whisper_runs("frozen", trainable_layers=1)
    assert _is(trainable, DECODER_LAYER) and not _is(trainable, ENCODER)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_a_finished_run_transcribes_as_it_scored(whisper_runs, whisper_tones, mode, capsys):
    """predictions.jsonl (generated in the Trainer's evaluation) == tunesuite.load(OUT).predict == the CLI."""
    from tunesuite.cli import main

    _, out, _ = whisper_runs(mode)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert list(rows[0]) == ["path", "reference", "hypothesis", "wer", "cer"]
    paths = [r["path"] for r in rows]
    normalise = ctc.normaliser(ctc.DEFAULT_CHARS_TO_IGNORE)
    predicted = tunesuite.load(out).predict(paths)
    assert [normalise(p["text"]) for p in predicted] == [r["hypothesis"] for r in rows]
    assert len({r["hypothesis"] for r in rows}) >= 1 and all(r["hypothesis"] for r in rows)
    capsys.readouterr()
    main(["predict", str(out), *paths[:2]])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{"text": p["text"]} for p in printed] == predicted[:2]


def test_training_lowers_the_loss(tiny_whisper_model, whisper_tones, tmp_path):  # noqa: F811
    settings = {**FAST, "max_steps": 15, "do_predict": False}
    before, after = (tunesuite.finetune("asr", str(tiny_whisper_model), str(whisper_tones), mode="full",
                                        output_dir=str(tmp_path / str(lr)), **{**settings, "learning_rate": lr})
                     for lr in (0.0, 1e-2))
    assert after["eval_loss"] < 0.8 * before["eval_loss"], (before, after)


def test_prompt_mode_refuses_a_deep_prompt_in_one_line(tiny_whisper_model, whisper_tones, tmp_path):  # noqa: F811
    """Whisper's speech-recognition prompt is frames after the encoder (modes/whisper_prompts.py): no depth."""
    with pytest.raises(TunesuiteError) as caught:
        tunesuite.finetune("asr", str(tiny_whisper_model), str(whisper_tones), mode="prompt", prompt_depth="deep",
                           output_dir=str(tmp_path / "p"), **FAST)
    message = str(caught.value)
    assert "\n" not in message and "--prompt-depth deep" in message and "shallow" in message


def test_evaluation_runs_the_encoder_once_per_batch(tiny_whisper_model, whisper_tones, tmp_path,  # noqa: F811
                                                    monkeypatch):
    """The loss and the generated transcripts of an evaluation batch read one encoder pass (generating used to
    run the encoder a second time)."""
    from transformers.models.whisper import modeling_whisper

    calls = []
    original = modeling_whisper.WhisperEncoder.forward
    monkeypatch.setattr(modeling_whisper.WhisperEncoder, "forward",
                        lambda self, *a, **k: calls.append(len(a[0] if a else k["input_features"])) or
                        original(self, *a, **k))
    result = tunesuite.finetune("asr", str(tiny_whisper_model), str(whisper_tones), mode="full",
                                output_dir=str(tmp_path / "out"), **{**FAST, "max_steps": 1, "do_predict": False,
                                                                     "per_device_eval_batch_size": 4})
    assert result["eval_wer"] == result["eval_wer"]
    assert calls == [4, 4, 4]  # one training batch; the four validation clips, then the four test clips
