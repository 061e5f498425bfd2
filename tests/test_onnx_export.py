"""`tunesuite export OUT DEST --format onnx`: per task, export -> parity with the run's own predictor -> predict
from DEST (library and command line); the gate refusing an int8 model past --max-metric-drop and leaving nothing;
the runs that cannot be exported refused in one line. Needs the `deploy` extra (onnx, onnxruntime, onnxscript)."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import tunesuite  # noqa: E402
from tunesuite.cli import main  # noqa: E402
from tunesuite.models.onnx_predictor import OnnxPredictor  # noqa: E402
from tunesuite.publish.onnx_export import export_onnx  # noqa: E402

# fp32 ONNX against PyTorch: the same arithmetic in another order, so float rounding only
LOGIT_TOLERANCE = 1e-4


def _inputs(setup: str, request) -> list:
    """A few raw inputs of the setup's kind, as `tunesuite predict` takes them."""
    if setup == "text":
        return ["goal team coach the match", "flour and salt in the oven", "guitar band song", "the a of"]
    folder = request.getfixturevalue({"image-vit": "image_data", "audio": "pitch_data", "speech": "tone_data"}[setup])
    files = sorted(p for p in folder.rglob("*") if p.suffix in {".png", ".jpg", ".wav", ".flac"})
    return [str(p) for p in files[:4]]


@pytest.mark.parametrize(("setup", "mode"), [("text", "lora"), ("image-vit", "full"), ("audio", "lora"),
                                             ("speech", "full")])
def test_export_predicts_as_the_run(trained, request, tmp_path, setup, mode):
    run = trained(setup, mode)
    dest = export_onnx(run.out, tmp_path / "onnx", timing_runs=3)
    report = json.loads((dest / "deploy_report.json").read_text())
    assert set(report["models"]) == {"pytorch_fp32", "onnx_fp32"}
    assert report["models"]["onnx_fp32"]["max_logit_diff"] < LOGIT_TOLERANCE
    metric = report["metric"]
    assert report["models"]["onnx_fp32"][metric] == pytest.approx(report["models"]["pytorch_fp32"][metric])
    assert (dest / "deploy_report.md").read_text().count("| onnx_fp32 |") == 1

    items = _inputs(setup, request)
    ours, exported = tunesuite.load(run.out), tunesuite.load(dest)
    assert isinstance(exported, OnnxPredictor)
    if setup != "speech":  # CTC logits differ in length from batch to batch: compared through the decoded text
        assert (ours.logits(items) - exported.logits(items)).abs().max() < LOGIT_TOLERANCE
    expected, got = ours.predict(items), exported.predict(items)
    assert [row.get("label", row.get("text")) for row in got] == [row.get("label", row.get("text")) for row in expected]
    for mine, theirs in zip(got, expected, strict=True):
        if "score" in mine:
            assert mine["score"] == pytest.approx(theirs["score"], abs=1e-4)


def test_int8_export_from_the_command_line(trained, tmp_path, capsys):
    run = trained("text", "lora")
    dest = tmp_path / "int8"
    main(["export", str(run.out), str(dest), "--format", "onnx", "--quantize", "int8", "--max-metric-drop", "1"])
    report = json.loads((dest / "deploy_report.json").read_text())
    assert set(report["models"]) == {"pytorch_fp32", "onnx_fp32", "onnx_int8"}
    assert report["kept"] == ["model.onnx", "model_int8.onnx"]
    assert report["models"]["onnx_int8"]["size_mb"] < report["models"]["onnx_fp32"]["size_mb"]
    for row in report["models"].values():
        assert row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"] and row["rows_per_s_batch32"] > 0
    texts = tmp_path / "texts.txt"
    texts.write_text("goal team coach the match\nflour and salt in the oven\n")
    capsys.readouterr()
    main(["predict", str(dest), str(texts)])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == [r["label"] for r in tunesuite.load(run.out).predict(
        ["goal team coach the match", "flour and salt in the oven"])]


def test_the_gate_refuses_and_leaves_nothing(trained, tmp_path, monkeypatch):
    from tunesuite.publish import deploy_gate

    run = trained("text", "lora")
    real = deploy_gate.score

    def int8_loses(*args, **kwargs):  # a quantizer that costs accuracy, as real ones can
        report = real(*args, **kwargs)
        report["models"]["onnx_int8"]["accuracy"] = report["models"]["pytorch_fp32"]["accuracy"] - 0.02
        return report

    monkeypatch.setattr(deploy_gate, "score", int8_loses)
    (tmp_path / ".refused.partial-999999999").mkdir()  # what a killed export leaves: removed by the next one
    with pytest.raises(tunesuite.TunesuiteError, match=r"onnx_int8 model scores accuracy .*a drop of 0\.0200, past "
                                                       r"--max-metric-drop 0\.01"):
        export_onnx(run.out, tmp_path / "refused", quantize="int8", timing_runs=2)
    assert not (tmp_path / "refused").exists()
    assert list(tmp_path.iterdir()) == []  # no hidden staging folder either, old or new


def test_a_negative_max_metric_drop_is_refused(trained, tmp_path):
    run = trained("text", "lora")
    with pytest.raises(tunesuite.TunesuiteError, match="--max-metric-drop -1"):
        export_onnx(run.out, tmp_path / "x", quantize="int8", max_metric_drop=-1)


@pytest.mark.parametrize(("setup", "mode", "message"), [
    ("image-vit", "prompt", "prompt runs cannot be exported to ONNX: their prompts are not part of the weights"),
    ("text", "prompt", r"only adapters of a mergeable mode \(lora, .*\) can be merged"),
])
def test_runs_that_cannot_be_exported(trained, tmp_path, setup, mode, message):
    with pytest.raises(tunesuite.TunesuiteError, match=message):
        export_onnx(trained(setup, mode).out, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def _copy_with_config(out, folder, **changes):
    """A copy of the run in `out` whose config.json carries `changes`."""
    shutil.copytree(out, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def test_other_encoder_decoder_runs_are_refused_naming_what_works(trained, tmp_path):
    run = _copy_with_config(trained("text", "full").out, tmp_path / "whisper-like", is_encoder_decoder=True)
    with pytest.raises(tunesuite.TunesuiteError, match="encoder-decoder model cannot be exported to ONNX: .*Whisper.*"
                                                       "text, image, audio classification and CTC.*--merge DEST"):
        export_onnx(run, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_folder_in_use_is_refused(trained, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    with pytest.raises(tunesuite.TunesuiteError, match="already exists and is not an empty folder"):
        export_onnx(trained("text", "full").out, tmp_path / "used")
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["keep.txt"]


def test_the_calibration_temperature_travels(trained, tmp_path):
    from tunesuite.tasks.calibration import TEMPERATURE

    run = _copy_with_config(trained("text", "full").out, tmp_path / "calibrated", **{TEMPERATURE: 3.0})
    dest = tunesuite.export(run, tmp_path / "onnx", format="onnx")
    assert json.loads((dest / "config.json").read_text())[TEMPERATURE] == 3.0
    items = ["goal team coach the match", "flour and salt in the oven"]
    expected = tunesuite.load(run).predict(items)
    assert [r["score"] for r in tunesuite.load(dest).predict(items)] == pytest.approx([r["score"] for r in expected],
                                                                                        abs=1e-4)
    plain = tunesuite.load(trained("text", "full").out).predict(items)
    assert expected[0]["score"] < plain[0]["score"]  # the temperature is in use: scores flatter than the run's
