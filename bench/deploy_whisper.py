"""What serving a Whisper run as ONNX costs and saves: tiny.en fine-tuned a few steps (frozen encoder) on the
Whisper demo's made-up domain, exported to ONNX fp32 and int8 (both graphs), PyTorch fp32 beside them in the same
process: WER, CER, identical transcripts, batch-1 latency per clip (encoder + greedy decoding), sizes.

    PYTHONPATH=src python bench/deploy_whisper.py [--steps 3] [--test 12] [--threads 1] [--runs 10]
    PYTHONPATH=src python bench/deploy_whisper.py --run OUT     # any finished Whisper run instead

The figures come from the export's own gate (DEST/deploy_report.json), so the bench and `tunesuite export` measure
the same way. The ONNX decoder has no key/value cache: each step reads the whole prefix again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from core import setup_process, text_table

CONVERTED = Path("/tmp/whisper-tiny-en")  # tiny.en converted once (`tunesuite convert`), if it is there


def train(work: Path, steps: int, test: int) -> Path:
    """The demo's frozen recipe (the encoder frozen and cached, the decoder's layers train) on its corpus (a small
    test split), `steps` steps of 4 clips, at --precision auto: LoRA on the encoder needs more memory than a
    shared machine has spare (its 30 s attention maps, batch 8); `--run` exports a LoRA run made elsewhere."""
    import tunesuite
    from tunesuite.demos import whisper_speech as demo

    out = work / f"frozen-{steps}"
    if (out / "all_results.json").is_file():
        return out  # trained by an earlier bench: the export side is what is measured
    model = CONVERTED if (CONVERTED / "model.safetensors").is_file() else demo.checkpoint(work)
    data, _ = demo.corpus(work, sizes={"train": 64, "validation": 4, "test": test})
    settings, _ = demo.MODES["frozen"]
    tunesuite.finetune("asr", str(model), str(data), mode="frozen", output_dir=str(out), max_steps=steps,
                       do_predict=False, **{**demo.COMMON, **settings, "per_device_train_batch_size": 4,
                                            "per_device_eval_batch_size": 4})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--test", type=int, default=12, help="test clips the gate transcribes")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--runs", type=int, default=10, help="batch-1 clips timed per model")
    parser.add_argument("--work", default="runs/bench-deploy-whisper")
    parser.add_argument("--run", help="a finished Whisper run to export instead of training one")
    args = parser.parse_args()
    setup_process(args.threads)

    from tunesuite.publish.onnx_export import export_onnx

    work = Path(args.work)
    start = time.perf_counter()
    out = Path(args.run) if args.run else train(work, args.steps, args.test)
    trained = time.perf_counter() - start
    dest = work / f"{out.name}-onnx"
    shutil.rmtree(dest, ignore_errors=True)
    start = time.perf_counter()
    export_onnx(out, dest, quantize="int8", max_metric_drop=1.0, timing_runs=args.runs)  # the bench judges
    exported = time.perf_counter() - start
    report = json.loads((dest / "deploy_report.json").read_text())
    models = report["models"]
    base = models["pytorch_fp32"]
    rows = [[name, f"{row['wer']:.4f}", f"{row['wer'] - base['wer']:+.4f}", f"{row['cer']:.4f}",
             f"{row['same_ids_as_pytorch']:.0%}", f"{row['p50_ms']:.0f}", f"{row['p95_ms']:.0f}",
             f"{row['p50_ms'] / base['p50_ms']:.2f}x", f"{row['size_mb']:.1f}"] for name, row in models.items()]
    print(text_table(["model", "WER", "WER rise", "CER", "same ids", "p50 ms b1", "p95 ms b1", "p50 vs fp32", "MB"],
                     rows))
    print(f"\n{out}: {report['rows']} test clips; {report['machine']}; trained in {trained:.0f} s, exported and "
          f"gated in {exported:.0f} s; report: {dest / 'deploy_report.md'}")


if __name__ == "__main__":
    main()
