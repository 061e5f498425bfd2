"""`tunesuite export OUT DEST --format onnx [--quantize int8]`: a finished run as ONNX for onnxruntime, gated.

Adapters are merged first (publish/export.py's merge); the merged model goes through torch's TorchScript-based
exporter (`torch.onnx.export(dynamo=False)`): the dynamo exporter cannot trace transformers 5's BERT-style masks
with dynamic shapes, and optimum's exporter does not install beside transformers 5. onnxruntime's
`quantize_dynamic` writes the int8 model (int8 weights of the MatMul/Gemm layers, activations quantized on the
fly). Everything is written to a hidden folder beside DEST, checked by the gate (publish/deploy_gate.py) and moved
into place only when it passes, so a refused or failed export leaves DEST as it was. A Whisper run's graphs,
generation settings and WER gate are publish/onnx_seq2seq.py's, in the same staging.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path
from typing import Any

from tunesuite.errors import TunesuiteError
from tunesuite.files import give_user_modes
from tunesuite.models.onnx_predictor import FP32, INT8, OnnxPredictor, session
from tunesuite.models.run_folder import CONFIG, RunFolder
from tunesuite.publish import deploy_gate, onnx_seq2seq
from tunesuite.publish.export import merged_model

# --quantize: onnxruntime's settings for each. Per-channel scales (one per output column of a weight) halved the
# largest logit difference of the text demo's MiniLM LoRA run (1.17 -> 0.56) at the same speed (docs/deploy.md).
QUANTIZE: dict[str, dict[str, bool]] = {"int8": {}, "int8-per-channel": {"per_channel": True}}
OPSET = 17
PROMPT_REFUSED = ("prompt runs cannot be exported to ONNX: their prompts are not part of the weights (they need "
                  "tunesuite's hooks); runs of full, frozen, bitfit or a mergeable mode can; predict with "
                  "tunesuite.load(OUT)")


def _check_packages() -> None:
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            raise TunesuiteError(f"--format onnx needs {name}: pip install 'tunesuite[deploy]'") from None


def _check_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise TunesuiteError(f"{dest} already exists and is not an empty folder: name a new folder for the export")


def _remove_stale_stages(dest: Path) -> None:
    """Hidden folders a killed export left beside `dest` (their process is gone)."""
    for stage in dest.parent.glob(f".{dest.name}.partial-*"):
        pid = stage.name.rsplit("-", 1)[-1]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(stage, ignore_errors=True)
        except PermissionError:
            pass  # another user's process, alive


class _Logits:
    """The model as the exporter sees it: input tensors in a fixed order -> logits."""

    def __init__(self, model: Any, names: list[str]):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors: Any) -> Any:
                return self.model(**dict(zip(names, tensors, strict=True))).logits

        self.module = Wrapped().eval()  # eval: the exporter puts the wrapper's mode back on the model afterwards


def write_onnx(model: Any, sample: dict[str, Any], file: Path) -> None:
    """`model` traced on `sample` (a batch of its inputs) into `file`: the batch axis is dynamic, and so is the
    length axis of 2-D inputs (tokens, audio samples); images keep their size."""
    import warnings

    import torch

    names = list(sample)
    axes = {name: ({0: "batch", 1: "length"} if sample[name].ndim == 2 else {0: "batch"}) for name in names}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about Python branches on shapes the export keeps dynamic
        torch.onnx.export(_Logits(model, names).module, tuple(sample[n] for n in names), str(file),
                          input_names=names, output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def write_int8(fp32: Path, int8: Path, per_channel: bool = False) -> None:
    """onnxruntime's dynamic quantization: int8 weights for the MatMul and Gemm layers (one scale per weight
    tensor, or per output channel). Convolutions stay fp32: onnxruntime's ConvInteger was 4.7x slower than the
    fp32 Conv on the image demo's ResNet, and it raised the speech demo's WER from 0.28 to 0.40."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process on the root logger: for static quantization
    try:
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         per_channel=per_channel)
    finally:
        root.setLevel(level)


def _machine() -> str:
    import torch

    return f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPUs, " \
           f"{torch.get_num_threads()} threads"


def _gate_data(dataset: str | None, prepared: Any) -> str:
    """What the gate scored, as the report says it."""
    if dataset:
        return f"--dataset {dataset}"
    return "the run's test split" if prepared.test is not None else "the run's eval split (it has no test split)"


def export_onnx(out_dir: str | Path, dest: str | Path, quantize: str | None = None, dataset: str | None = None,
                max_metric_drop: float = 0.01, timing_runs: int = 30) -> Path:
    """Export the run in `out_dir` to ONNX in `dest` (with an int8 copy for `quantize` "int8" or
    "int8-per-channel"), gated on the run's test split (or `dataset`): a model that loses more than
    `max_metric_drop` of the metric is refused and nothing is written. Returns `dest`, which holds the model(s),
    config, processor, run_config.yaml and deploy_report.json / .md."""
    import torch

    if quantize is not None and quantize not in QUANTIZE:
        raise TunesuiteError(f"--quantize {quantize} is not supported; use --quantize {' or '.join(QUANTIZE)}, or "
                             "leave it out for fp32")
    if not max_metric_drop >= 0:
        raise TunesuiteError(f"--max-metric-drop {max_metric_drop} must be a number >= 0 (default 0.01)")
    _check_packages()
    out, dest = Path(out_dir).expanduser(), Path(dest).expanduser()
    _check_dest(dest)
    run = RunFolder.read(out)
    predictor, model = merged_model(out, PROMPT_REFUSED)
    model = model.eval()
    task, processor = run.task, predictor.processor
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_stages(dest)
    stage = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        prepared, split = deploy_gate.gate_split(out, task, processor, dataset, stage / "work")
        if getattr(model.config, "is_encoder_decoder", False):  # Whisper: two graphs, greedy decoding, WER gate
            onnx_seq2seq.write_and_gate(out, task, model, processor, prepared, split, stage, quantize,
                                        max_metric_drop, timing_runs, write_int8,
                                        {"run": str(out), "split": _gate_data(dataset, prepared),
                                         "machine": _machine()})
            return _move_in(stage, dest)
        collate = task.data.collator(prepared.processor)
        sample = collate([split[i] for i in range(min(2, len(split)))])
        sample.pop("labels", None)
        write_onnx(model, sample, stage / FP32)
        files = {"pytorch_fp32": None, "onnx_fp32": stage / FP32}
        if quantize:
            write_int8(stage / FP32, stage / INT8, **QUANTIZE[quantize])
            files["onnx_int8"] = stage / INT8
        model.config.save_pretrained(stage)
        processor.save_pretrained(stage)
        shutil.copy2(out / CONFIG, stage / CONFIG)

        threads = torch.get_num_threads()

        def pytorch(batch: dict[str, Any]) -> Any:
            with torch.no_grad():
                return model(**batch).logits

        runners = {name: pytorch if file is None else
                   OnnxPredictor(task, session(file, threads), processor, model.config).run
                   for name, file in files.items()}
        report = deploy_gate.score(task, prepared, split, runners)
        for name in files:  # refused before the timing: a refusal costs the scoring only
            if name != "pytorch_fp32" and (line := deploy_gate.refusal(report, name, max_metric_drop)):
                raise TunesuiteError(f"{out}: {line}")
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        for name, runner in runners.items():
            report["models"][name].update(deploy_gate.speed(runner, split, collate, timing_runs))
            size = weights if files[name] is None else files[name].stat().st_size
            report["models"][name]["size_mb"] = round(size / 2**20, 3)
        report.update(run=str(out), split=_gate_data(dataset, prepared),
                      machine=_machine(), max_metric_drop=max_metric_drop, quantize=quantize,
                      kept=[f.name for f in files.values() if f is not None])
        deploy_gate.write(stage, report)
        return _move_in(stage, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _move_in(stage: Path, dest: Path) -> Path:
    """The checked export, staged beside `dest`, moved into place."""
    shutil.rmtree(stage / "work", ignore_errors=True)
    give_user_modes(stage)  # files a library wrote 0600 follow the user's umask, as the run's own do
    if dest.exists():
        dest.rmdir()  # empty (checked above)
    stage.rename(dest)
    return dest
