"""Speech recognition beyond the task x mode matrix (test_matrix.py): exact trainable names per mode and flag,
what moves on disk, the vocabulary, WER/CER per utterance, learning, and reloading (CLI, transformers.pipeline,
evaluate again, resume) to the same transcripts."""

from __future__ import annotations

import json

import jiwer
import numpy as np
import pytest
import torch
from asr_fixtures import RATE, SEED, needs_espeak, tone_audio

import tunesuite

FAST = {"max_steps": 4, "per_device_train_batch_size": 8, "warmup_steps": 0, "disable_tqdm": True, "seed": SEED,
        "save_strategy": "no", "eval_strategy": "no", "logging_steps": 4, "do_predict": True}


@pytest.fixture
def runs(trained):
    """mode -> (result, out): the matrix's short runs (conftest.SETUPS["speech"]), trained once per session."""

    def get(mode: str):
        run = trained("speech", mode)
        return run.result, run.out

    return get


def test_vocabulary_grows_and_rows_are_scored_like_jiwer(runs):
    result, out = runs("lora")
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab == {"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "b": 4, "c": 5, "d": 6, "e": 7}  # grew from a-d
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == len(vocab) and config["pad_token_id"] == 0
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["test_cer"] == result["test_cer"]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert list(rows[0]) == ["path", "reference", "hypothesis", "wer", "cer"]
    assert rows[0]["path"].endswith("wavs/test-0.wav") and rows[0]["reference"] == rows[0]["reference"].lower()
    for row in rows:
        assert row["wer"] == pytest.approx(jiwer.wer(row["reference"], row["hypothesis"]))
        assert row["cer"] == pytest.approx(jiwer.cer(row["reference"], row["hypothesis"]))
    refs, hyps = [r["reference"] for r in rows], [r["hypothesis"] for r in rows]
    assert jiwer.cer(refs, hyps) == pytest.approx(result["test_cer"])


def test_what_moved_on_disk(runs, tiny_w2v):
    """Compare the saved weights with the base model's: the conv front end never moves; the encoder moves in full
    mode only."""
    from safetensors.torch import load_file

    base = load_file(tiny_w2v / "model.safetensors")
    conv = "wav2vec2.feature_extractor.conv_layers.0.conv.weight"
    layer = "wav2vec2.encoder.layers.0.attention.q_proj.weight"
    for mode, encoder_moves in (("full", True), ("frozen", False), ("prompt", False)):
        saved = load_file(runs(mode)[1] / "model.safetensors")
        assert torch.equal(saved[conv], base[conv]), mode
        assert torch.equal(saved[layer], base[layer]) != encoder_moves, mode
    assert set(load_file(runs("prompt")[1] / "model.safetensors")) - set(base) >= {"prompt.frames"}


def trainable_after_mode(model_path, data_path, tmp_path, mode, *extra):
    from tunesuite.cli import parse_args
    from tunesuite.train.recipe import apply_mode, load_model

    task = tunesuite.ASR
    cfg = parse_args(task, ["--model", str(model_path), "--dataset", str(data_path), "--mode", mode,
                            "--output-dir", str(tmp_path), *extra])
    model, head = load_model(task, cfg, {"vocab_size": 7, "pad_token_id": 0})
    model = apply_mode(model, task, cfg, head)
    return {n for n, p in model.named_parameters() if p.requires_grad}, {n for n, _ in model.named_parameters()}


def test_trainable_parameters_by_mode(tiny_w2v, tone_data, tmp_path):
    full, everything = trainable_after_mode(tiny_w2v, tone_data, tmp_path, "full")
    conv = {n for n in everything if n.startswith("wav2vec2.feature_extractor.")}
    assert conv and full == everything - conv  # the conv feature encoder stays frozen by default
    unfrozen, _ = trainable_after_mode(tiny_w2v, tone_data, tmp_path, "full", "--no-freeze-feature-encoder")
    assert unfrozen == everything

    head = {"lm_head.weight", "lm_head.bias"}
    frozen, _ = trainable_after_mode(tiny_w2v, tone_data, tmp_path, "frozen")
    assert frozen == head
    top1, _ = trainable_after_mode(tiny_w2v, tone_data, tmp_path, "frozen", "--trainable-layers", "1")
    layer1 = {n for n in everything if n.startswith("wav2vec2.encoder.layers.1.")}
    assert layer1 and top1 == head | layer1

    lora, _ = trainable_after_mode(tiny_w2v, tone_data, tmp_path, "lora")
    assert lora == {f"base_model.model.wav2vec2.encoder.layers.{i}.attention.{m}.lora_{ab}.default.weight"
                    for i in (0, 1) for m in ("q_proj", "v_proj") for ab in "AB"} | {
        f"base_model.model.lm_head.modules_to_save.default.{p}" for p in ("weight", "bias")}
    targets, _ = trainable_after_mode(tiny_w2v, tone_data, tmp_path, "lora", "--lora-target-modules", "k_proj")
    assert {n.split(".attention.")[1].split(".")[0] for n in targets if "lora_" in n} == {"k_proj"}

    prompt, _ = trainable_after_mode(tiny_w2v, tone_data, tmp_path, "prompt", "--num-virtual-tokens", "3")
    assert prompt == head | {"prompt.frames"}


def test_training_lowers_the_ctc_loss(tiny_w2v, tone_data, tmp_path):
    """The same run with learning rate 0 and with a real one: the loss must fall well below the untrained one."""
    settings = {**FAST, "max_steps": 40, "do_predict": False, "freeze_feature_encoder": False}
    before, after = (tunesuite.finetune("asr", str(tiny_w2v), str(tone_data), mode="full", learning_rate=lr,
                                       output_dir=str(tmp_path / str(lr)), **settings) for lr in (0.0, 1e-2))
    assert np.isfinite(before["eval_loss"]) and after["eval_loss"] < 0.5 * before["eval_loss"], (before, after)


def test_prompt_frames_do_not_change_the_output_length(runs):
    predictor = tunesuite.load(runs("prompt")[1])
    assert predictor.model.prompt.frames.shape == (4, 32)
    waves = [tone_audio("ab"), tone_audio("abc de")]
    logits = [predictor.logits([w]) for w in waves]
    expected = [int(predictor.model._get_feat_extract_output_lengths(len(w))) for w in waves]
    assert [lg.shape[1] for lg in logits] == expected


def test_padding_in_a_batch_does_not_change_a_transcript(runs, tone_data):
    _, out = runs("prompt")
    paths = [str(tone_data / "wavs" / f"test-{i}.wav") for i in range(8)]
    predictor = tunesuite.load(out)
    assert predictor.predict(paths, batch_size=8) == [predictor.predict([p])[0] for p in paths]


def test_cli_predict_transcribes_wav_files(runs, tone_data, tmp_path, capsys):
    """`tunesuite predict OUT a.wav b.wav`: wav paths at any rate, no ffmpeg; the same as tunesuite.load(OUT)."""
    import soundfile as sf

    from tunesuite.cli import main

    _, out = runs("lora")
    other_rate = tmp_path / "ab-cd-22050.wav"
    sf.write(other_rate, tone_audio("ab cd", 22050), 22050)
    paths = [str(tone_data / "wavs" / "test-0.wav"), str(other_rate)]
    capsys.readouterr()
    main(["predict", str(out), *paths])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == paths
    assert [{"text": r["text"]} for r in rows] == tunesuite.load(out).predict(paths)
    assert all(r["text"] for r in rows)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_pipeline_transcribes_like_the_predictor(runs, tone_data, tmp_path, mode):
    """A full run is a plain transformers checkpoint; a LoRA run becomes one with export.merge."""
    from transformers import pipeline

    from tunesuite.publish.export import merge

    _, out = runs(mode)
    plain = out if mode == "full" else merge(out, tmp_path / "merged")
    asr = pipeline("automatic-speech-recognition", model=str(plain))
    predictor = tunesuite.load(out)
    for i in range(3):
        path = tone_data / "wavs" / f"test-{i}.wav"
        samples = tunesuite.data.audio.load(path, RATE)
        assert asr({"raw": samples, "sampling_rate": RATE})["text"] == predictor.predict([str(path)])[0]["text"]


@needs_espeak
def test_pipeline_on_real_speech_wav(runs, tmp_path):
    """espeak-ng speech at 22.05 kHz: tunesuite resamples; the pipeline gets the same 16 kHz samples."""
    from transformers import pipeline

    from tunesuite.demos.speech_corpus import Utterance, synthesize

    wav = tmp_path / "seven.wav"
    synthesize(Utterance("seven one", "en-us+f2", 160, 50), wav)
    _, out = runs("full")
    samples = tunesuite.data.audio.load(wav, RATE)
    text = pipeline("automatic-speech-recognition", model=str(out))({"raw": samples, "sampling_rate": RATE})["text"]
    assert text == tunesuite.load(out).predict([str(wav)])[0]["text"]
    assert set(text) <= set("abcde <unk>")  # the tone model knows only its own letters


def test_evaluate_a_finished_run_again(runs, tone_data, tmp_path):
    result, out = runs("lora")
    again = tunesuite.evaluate(out)
    assert again["eval_wer"] == pytest.approx(result["eval_wer"])
    assert again["test_cer"] == pytest.approx(result["test_cer"])
    other = tmp_path / "new-letters.csv"  # a character the model never learned: refused, not silently mis-scored
    other.write_text("path,text\n" + "".join(f"{tone_data / 'wavs' / f'test-{i}.wav'},ab xyz\n" for i in range(3)))
    with pytest.raises(tunesuite.TunesuiteError, match="holds characters the model never learned"):
        tunesuite.evaluate(out, dataset=str(other), eval_split="train")


def test_resume_with_a_resized_head(tiny_w2v, tone_data, tmp_path, caplog):
    """The head grew from the model's 7 symbols to the data's 8: resuming rebuilds the same vocabulary and loads."""
    import logging

    settings = {**FAST, "do_predict": False, "save_strategy": "steps", "save_steps": 2, "learning_rate": 1e-3}
    run = ("asr", str(tiny_w2v), str(tone_data))
    tunesuite.finetune(*run, mode="lora", output_dir=str(tmp_path), **{**settings, "max_steps": 2})
    logging.getLogger("tunesuite").addHandler(caplog.handler)
    try:
        result = tunesuite.finetune(*run, mode="lora", output_dir=str(tmp_path), resume_from_checkpoint="auto",
                                    **{**settings, "max_steps": 4})
    finally:
        logging.getLogger("tunesuite").removeHandler(caplog.handler)
    assert f"resume auto: {tmp_path / 'checkpoint-2'}" in caplog.text
    assert json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
    assert np.isfinite(result["eval_wer"])
