"""`tunesuite export OUT DEST --format onnx` for a Whisper run (the tiny converted one, whisper_fixtures.py): the
encoder and decoder graphs with our greedy loop write the ids the run's own `generate` writes, token for token;
DEST transcribes as the run does (library and command line); the gate refuses on WER and leaves nothing; a clip
longer than the window is refused in one line. Needs the `deploy` extra (onnx, onnxruntime, onnxscript)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import torch  # noqa: E402
from whisper_fixtures import tiny_multilingual_whisper  # noqa: E402, F401  (a fixture)

import tunesuite  # noqa: E402
from tunesuite.cli import main  # noqa: E402
from tunesuite.models import onnx_seq2seq_predictor  # noqa: E402
from tunesuite.publish.onnx_export import export_onnx  # noqa: E402


def _clips(folder) -> list[str]:
    return [str(p) for p in sorted(folder.rglob("*.wav"))[:6]]


def _sounds(rate: int) -> list[dict]:
    """Silence, noise and tones at several loudnesses: clips the varied model reads differently."""
    rng, time = np.random.default_rng(0), np.arange(int(rate * 0.8)) / rate
    sounds = [np.zeros_like(time), *(rng.standard_normal(len(time)) * level for level in (0.01, 0.3, 1.0)),
              *(np.sin(2 * np.pi * f * time) * level for f, level in ((150, 0.9), (700, 0.05), (3000, 0.5)))]
    return [{"array": s.astype(np.float32), "sampling_rate": rate} for s in sounds]


def _loud(model):
    generator = torch.Generator().manual_seed(0)
    generation = model.generation_config
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
        rows = model.get_output_embeddings().weight
        rows[generation.eos_token_id] = rows[24] + 0.1 * torch.randn(rows.shape[1], generator=generator)
    timestamps = range(generation.no_timestamps_token_id + 1, rows.shape[0])
    generation.suppress_tokens = sorted({*generation.suppress_tokens, *timestamps}
                                        - set((getattr(generation, "lang_to_id", None) or {}).values()))
    return model


@pytest.fixture(scope="module")
def varied_whisper(tiny_whisper_model, tmp_path_factory):
    """The tiny Whisper with loud random weights, whose end-of-text row copies a token it writes in some clips and
    not others: transcripts of several tokens and lengths (the plain tiny model writes one token to the limit),
    so a slip in the start, suppression, stop or padding shows. Timestamp ids are suppressed: a random model
    writes them, and transformers' generate then reads segments."""
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    model = _loud(AutoModelForSpeechSeq2Seq.from_pretrained(tiny_whisper_model))
    processor = AutoProcessor.from_pretrained(tiny_whisper_model)
    folder = tmp_path_factory.mktemp("varied-whisper")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def whisper_export(varied_whisper, tone_data, tmp_path_factory):
    """(a run of that model, its fp32 + int8 export); the run trains one step at a negligible rate."""
    out = tmp_path_factory.mktemp("varied-run") / "out"
    tunesuite.finetune("asr", str(varied_whisper), str(tone_data), mode="full", output_dir=str(out), max_steps=1,
                       learning_rate=1e-12, per_device_train_batch_size=4, disable_tqdm=True, save_strategy="no",
                       eval_strategy="no", do_predict=False, seed=0)
    dest = export_onnx(out, tmp_path_factory.mktemp("whisper-onnx") / "dest", quantize="int8",
                       max_metric_drop=100, timing_runs=2)
    return SimpleNamespace(out=out), dest


def test_greedy_decoding_matches_the_runs_generate(whisper_export, tone_data):
    run, dest = whisper_export
    ours = tunesuite.load(run.out)
    exported = onnx_seq2seq_predictor.load(dest, "fp32")
    clips = _clips(tone_data) + _sounds(ours.processor.feature_extractor.sampling_rate)
    batch = ours.task.data.make_batch(ours.processor, clips, ours.config)
    with torch.no_grad():
        expected = ours.model.generate(**batch)
    got = exported.generate(batch)
    assert got.shape == expected.shape and torch.equal(got, expected)
    lengths = {int((row != exported.setup["pad"]).sum()) for row in got}
    assert len(lengths) > 1 and len({int(t) for t in got.flatten()}) > 2  # the fixture does its job


def test_the_report_and_predict_from_dest(whisper_export, tone_data, capsys):
    run, dest = whisper_export
    report = json.loads((dest / "deploy_report.json").read_text())
    assert report["metric"] == "wer" and report["greater_is_better"] is False
    models = report["models"]
    assert set(models) == {"pytorch_fp32", "onnx_fp32", "onnx_int8"}
    assert models["onnx_fp32"]["same_ids_as_pytorch"] == 1.0
    assert models["onnx_fp32"]["wer"] == models["pytorch_fp32"]["wer"]
    assert models["onnx_fp32"]["cer"] == models["pytorch_fp32"]["cer"]
    assert models["onnx_int8"]["size_mb"] > 0  # not smaller here: the tiny model's weights are few, the scales not
    assert all(row["p95_ms"] >= row["p50_ms"] > 0 for row in models.values())
    assert report["kept"] == ["encoder.onnx", "decoder.onnx", "encoder_int8.onnx", "decoder_int8.onnx"]
    assert "| onnx_int8 |" in (dest / "deploy_report.md").read_text()

    clips = _clips(tone_data)
    expected = [row["text"] for row in tunesuite.load(run.out).predict(clips)]
    assert [row["text"] for row in onnx_seq2seq_predictor.load(dest, "fp32").predict(clips, batch_size=4)] == expected
    capsys.readouterr()
    main(["predict", str(dest), clips[0]])  # int8 by default (it passed the gate): it still transcribes
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and isinstance(rows[0]["text"], str)


def test_a_clip_longer_than_the_window_is_refused(whisper_export, tmp_path):
    import soundfile

    _, dest = whisper_export
    exported = tunesuite.load(dest)
    rate = exported.processor.feature_extractor.sampling_rate
    long = tmp_path / "long.wav"
    soundfile.write(long, np.zeros(rate * 3, dtype=np.float32), rate)  # the tiny model's window is 1 s
    with pytest.raises(tunesuite.TunesuiteError, match=r"long\.wav is 3\.0 s, longer than the model's 1 s window"):
        exported.predict([str(long)])


def test_the_gate_refuses_a_wer_rise_and_leaves_nothing(trained, tmp_path, monkeypatch):
    from tunesuite.publish import onnx_seq2seq

    run = trained("whisper-asr", "lora")
    real = onnx_seq2seq.score

    def int8_loses(*args, **kwargs):  # a quantizer that costs accuracy, as real ones can
        report = real(*args, **kwargs)
        report["models"]["onnx_int8"]["wer"] = report["models"]["pytorch_fp32"]["wer"] + 0.05
        return report

    monkeypatch.setattr(onnx_seq2seq, "score", int8_loses)
    with pytest.raises(tunesuite.TunesuiteError, match=r"onnx_int8 model scores wer .*a drop of 0\.0500, past "
                                                       r"--max-metric-drop 0\.01"):
        export_onnx(run.out, tmp_path / "refused", quantize="int8", timing_runs=2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("language", ["fr", None])
def test_multilingual_start_tokens_given_or_detected(tiny_multilingual_whisper, language):  # noqa: F811
    """A multilingual run's language and task tokens lead the start (--language), or the language is detected per
    clip from the first step when none was set: the greedy loop (here on torch's encoder and decoder) writes
    what generate writes."""
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    model = _loud(AutoModelForSpeechSeq2Seq.from_pretrained(tiny_multilingual_whisper)).eval()
    generation = model.generation_config
    generation.return_timestamps, generation.language, generation.task = False, language, "transcribe"
    processor = AutoProcessor.from_pretrained(tiny_multilingual_whisper)
    clips = _sounds(processor.feature_extractor.sampling_rate)
    features = processor.feature_extractor([c["array"] for c in clips], sampling_rate=clips[0]["sampling_rate"],
                                           return_tensors="pt")["input_features"]
    setup = onnx_seq2seq_predictor.settings(model)
    assert (setup["languages"] == []) == (language is not None) and len(setup["start"]) == 4

    def encode(f):
        return model.get_encoder()(input_features=torch.from_numpy(f)).last_hidden_state.numpy()

    def step(ids, states):
        return model(decoder_input_ids=torch.from_numpy(ids), encoder_outputs=(torch.from_numpy(states),)).logits[
            :, -1].numpy()

    with torch.no_grad():
        expected = model.generate(input_features=features)
        got = onnx_seq2seq_predictor.greedy(encode, step, features.numpy(), setup)
    assert torch.equal(torch.from_numpy(got), expected)
