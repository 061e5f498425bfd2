"""The ONNX export of a sequence-to-sequence speech run (Whisper): two graphs, generation settings, the WER gate.

onnx_export.py stages, checks and moves the folder in as for every task; this module writes what differs. The
encoder and the decoder are traced apart with torch's TorchScript exporter (the decoder returns the next token's
logits only, without a key/value cache) and, with --quantize int8, each goes through onnxruntime's dynamic
quantization. The gate transcribes the run's test split (or --dataset) with `generate` (PyTorch fp32) and with our
greedy loop on each ONNX pair, and scores WER and CER as the run does (the task's compute_metrics);
--max-metric-drop applies to WER, where a drop is a rise. Beside them: the share of clips whose ids match
PyTorch's, latency per clip at batch 1 (encoder and decoding together), and sizes.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tunesuite.errors import TunesuiteError
from tunesuite.files import write_text_atomic
from tunesuite.models import onnx_seq2seq_predictor as exported
from tunesuite.models.onnx_predictor import session
from tunesuite.models.run_folder import CONFIG
from tunesuite.publish import deploy_gate

OPSET = 17
REFUSED = ("this encoder-decoder model cannot be exported to ONNX: the export handles speech sequence-to-sequence "
           "models (Whisper) that generate, and text, image, audio classification and CTC speech runs; "
           "`tunesuite export OUT --merge DEST` writes this run as a transformers checkpoint")
Generate = Callable[[dict[str, Any]], Any]  # model inputs -> generated ids (a torch tensor)


def _check(model: Any) -> None:
    if not (model.can_generate() and hasattr(model, "get_encoder") and model.get_output_embeddings() is not None
            and model.main_input_name == "input_features"):
        raise TunesuiteError(REFUSED)


def write_graphs(model: Any, features: Any, encoder_file: Path, decoder_file: Path, start: list[int]) -> None:
    """The encoder (input_features -> encoder_hidden_states) and the decoder (decoder_input_ids,
    encoder_hidden_states -> the last position's logits) traced on `features`; batch and length axes dynamic."""
    import torch

    encoder, decoder, head = model.get_encoder(), model.get_decoder(), model.get_output_embeddings()

    class Encoder(torch.nn.Module):  # the wrapped modules registered: their weights become initialisers
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_features: Any) -> Any:
            return self.encoder(input_features=input_features).last_hidden_state

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder, self.head = decoder, head

        def forward(self, decoder_input_ids: Any, encoder_hidden_states: Any) -> Any:
            # a mask of ones: without one, transformers looks for packed sequences with torch.diff (no ONNX op)
            states = self.decoder(input_ids=decoder_input_ids, attention_mask=torch.ones_like(decoder_input_ids),
                                  encoder_hidden_states=encoder_hidden_states, use_cache=False).last_hidden_state
            return self.head(states[:, -1])

    ids = torch.tensor([[t if t >= 0 else 0 for t in start]] * len(features), dtype=torch.long)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about Python branches on shapes the export keeps dynamic
        states = encoder(input_features=features).last_hidden_state
        torch.onnx.export(Encoder().eval(), (features,), str(encoder_file), input_names=["input_features"],
                          output_names=["encoder_hidden_states"],
                          dynamic_axes={"input_features": {0: "batch"}, "encoder_hidden_states": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
        torch.onnx.export(Decoder().eval(), (ids, states), str(decoder_file),
                          input_names=["decoder_input_ids", "encoder_hidden_states"], output_names=["logits"],
                          dynamic_axes={"decoder_input_ids": {0: "batch", 1: "length"},
                                        "encoder_hidden_states": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def _rows(ids: np.ndarray, pad: int) -> list[tuple[int, ...]]:
    """Each row's ids without the padding after them: what two decoders are compared on."""
    out = []
    for row in ids:
        kept = np.flatnonzero((row != pad) & (row != -100))
        out.append(tuple(int(t) for t in row[: kept.max() + 1]) if kept.size else ())
    return out


def score(task: Any, prepared: Any, split: Any, runners: dict[str, Generate], pad: int,
          batch_size: int = 8) -> dict[str, Any]:
    """Each runner's WER and CER on `split` (the task's compute_metrics), and the share of clips whose generated
    ids are those of the first runner."""
    from transformers import EvalPrediction

    batches = deploy_gate.batches(split, task.data.collator(prepared.processor), batch_size)
    labels = deploy_gate.padded([b["labels"].numpy() for b in batches])
    compute = task.results.compute_metrics(prepared)
    reference: list[tuple[int, ...]] = []
    scores: dict[str, Any] = {}
    for name, runner in runners.items():
        ids = deploy_gate.padded([np.asarray(runner({"input_features": b["input_features"]})) for b in batches])
        rows = _rows(ids, pad)
        reference = reference or rows
        scores[name] = {**{k: float(v) for k, v in compute(EvalPrediction(predictions=ids, label_ids=labels)).items()},
                        "same_ids_as_pytorch": sum(a == b for a, b in zip(rows, reference, strict=True)) / len(rows)}
    return {"metric": task.results.main_metric, "greater_is_better": task.results.greater_is_better,
            "rows": len(split), "models": scores}


def speed(runner: Generate, split: Any, collate: Callable, runs: int) -> dict[str, float]:
    """Latency p50/p95 (ms) of one clip at a time, features to ids (the clips of the split in turn)."""
    clips = [collate([split[i % len(split)]])["input_features"] for i in range(min(runs, len(split)))]
    runner({"input_features": clips[0]})  # warm up: the first call allocates
    times = []
    for i in range(runs):
        begin = time.perf_counter()
        runner({"input_features": clips[i % len(clips)]})
        times.append(time.perf_counter() - begin)
    return {"p50_ms": round(1000 * float(np.percentile(times, 50)), 3),
            "p95_ms": round(1000 * float(np.percentile(times, 95)), 3)}


def markdown(report: dict[str, Any]) -> str:
    """deploy_report.md: one row per model."""
    lines = [f"# Deploy report: {report['run']}", "",
             f"Transcribed {report['rows']} clips ({report['split']}) by greedy decoding (at most "
             f"{report['max_length']} tokens); timed on this machine ({report['machine']}), one clip at a time "
             "(encoder + decoding).", "",
             "| model | WER | WER rise | CER | same ids as PyTorch | p50 ms (batch 1) | p95 ms | MB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in report["models"].items():
        lines.append(f"| {name} | {row['wer']:.4f} | {deploy_gate.drop(report, name):+.4f} | {row['cer']:.4f} | "
                     f"{row['same_ids_as_pytorch']:.0%} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
                     f"{row['size_mb']:.2f} |")
    lines += ["", f"Kept: {', '.join(report['kept'])}. Gate: --max-metric-drop {report['max_metric_drop']} (on WER).",
              ""]
    return "\n".join(lines)


def write_and_gate(out: Path, task: Any, model: Any, processor: Any, prepared: Any, split: Any, stage: Path,
                   quantize: str | None, max_metric_drop: float, timing_runs: int,
                   quantizer: Callable[[Path, Path], None], described: dict[str, Any]) -> dict[str, Any]:
    """Writes the graphs, generation.json, config, processor and run config into `stage`, scores them, refuses
    (TunesuiteError) a pair that loses more than `max_metric_drop` of WER, times them and writes the report."""
    import torch

    _check(model)
    setup = exported.settings(model)
    collate = task.data.collator(prepared.processor)
    features = collate([split[i] for i in range(min(2, len(split)))])["input_features"]
    pairs = {"onnx_fp32": exported.FILES["fp32"]}
    write_graphs(model, features, *(stage / f for f in pairs["onnx_fp32"]), setup["start"])
    if quantize:
        pairs["onnx_int8"] = exported.FILES[quantize]
        for fp32, int8 in zip(exported.FILES["fp32"], pairs["onnx_int8"], strict=True):
            quantizer(stage / fp32, stage / int8)
    write_text_atomic(stage / exported.GENERATION, json.dumps(setup, indent=2) + "\n")
    model.config.save_pretrained(stage)
    model.generation_config.save_pretrained(stage)
    processor.save_pretrained(stage)
    (stage / CONFIG).write_bytes((out / CONFIG).read_bytes())

    threads = torch.get_num_threads()

    def pytorch(batch: dict[str, Any]) -> Any:
        with torch.no_grad():
            return model.generate(input_features=batch["input_features"])

    runners: dict[str, Generate] = {"pytorch_fp32": pytorch}
    for name, (encoder, decoder) in pairs.items():
        runners[name] = exported.OnnxSeq2SeqPredictor(task, session(stage / encoder, threads),
                                                      session(stage / decoder, threads), processor, model.config,
                                                      setup).generate
    report = score(task, prepared, split, runners, setup["pad"])
    for name in pairs:  # refused before the timing: a refusal costs the scoring only
        if line := deploy_gate.refusal(report, name, max_metric_drop):
            raise TunesuiteError(f"{out}: {line}")
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    for name, runner in runners.items():
        report["models"][name].update(speed(runner, split, collate, timing_runs))
        size = weights if name == "pytorch_fp32" else sum((stage / f).stat().st_size for f in pairs[name])
        report["models"][name]["size_mb"] = round(size / 2**20, 3)
    report.update(described, max_metric_drop=max_metric_drop, max_length=setup["max_length"],
                  kept=[f for files in pairs.values() for f in files])
    deploy_gate.write(stage, report, markdown)
    return report
