"""`--quantize int8-per-channel`: the int8 copy gets one weight scale per output channel instead of one per
tensor, through the same gate and report. Needs the `deploy` extra (onnx, onnxruntime, onnxscript)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import tunesuite  # noqa: E402
from tunesuite.cli import main  # noqa: E402
from tunesuite.publish.onnx_export import export_onnx  # noqa: E402


def _weight_scales(model_file) -> list[int]:
    """Sizes of the scales of the quantized weights (initializers named ..._scale that have an int8 partner)."""
    graph = onnx.load(str(model_file)).graph
    names = {init.name: init for init in graph.initializer}
    return sorted(int(onnx.numpy_helper.to_array(init).size) for name, init in names.items()
                  if name.endswith("_scale") and name.removesuffix("_scale") + "_quantized" in names)


def test_per_channel_int8_has_a_scale_per_output_channel(trained, tmp_path, capsys):
    run = trained("text", "lora")
    main(["export", str(run.out), str(tmp_path / "pc"), "--format", "onnx", "--quantize", "int8-per-channel",
          "--max-metric-drop", "1"])
    capsys.readouterr()
    per_tensor = export_onnx(run.out, tmp_path / "pt", quantize="int8", max_metric_drop=1, timing_runs=2)
    per_channel = tmp_path / "pc"

    assert _weight_scales(per_tensor / "model_int8.onnx") and set(_weight_scales(per_tensor / "model_int8.onnx")) == {1}
    scales = _weight_scales(per_channel / "model_int8.onnx")
    assert len(scales) == len(_weight_scales(per_tensor / "model_int8.onnx")) and min(scales) > 1
    report = json.loads((per_channel / "deploy_report.json").read_text())
    assert report["quantize"] == "int8-per-channel" and report["kept"] == ["model.onnx", "model_int8.onnx"]
    assert json.loads((per_tensor / "deploy_report.json").read_text())["quantize"] == "int8"
    items = ["goal team coach the match", "flour and salt in the oven"]
    assert [r["label"] for r in tunesuite.load(per_channel).predict(items)] == \
        [r["label"] for r in tunesuite.load(per_tensor).predict(items)]


def test_an_unknown_quantization_is_refused_with_the_choices(trained, tmp_path):
    with pytest.raises(tunesuite.TunesuiteError, match=r"--quantize int4 is not supported; use --quantize int8 or "
                                                       r"int8-per-channel"):
        export_onnx(trained("text", "lora").out, tmp_path / "x", quantize="int4")
