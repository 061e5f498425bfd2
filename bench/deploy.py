"""What serving the exported model costs and saves: the text demo's MiniLM LoRA run (a shorter one) exported to
ONNX fp32 and int8, PyTorch fp32 beside them in the same process: batch-1 latency, batch-32 throughput, accuracy.

    PYTHONPATH=src python bench/deploy.py [--epochs 1] [--threads 2] [--runs 100] [--work runs/bench-deploy]
    PYTHONPATH=src python bench/deploy.py --run OUT     # any finished run instead (an image, audio or speech demo's)

Goal: int8 batch-1 p50 latency <= 0.35x PyTorch fp32's, accuracy drop <= 0.01. The figures come from the export's
own gate (DEST/deploy_report.json), so the bench and `tunesuite export` measure the same way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from core import setup_process, text_table

LATENCY_GOAL, DROP_GOAL = 0.35, 0.01


def train_text(work: Path, epochs: float) -> Path:
    """The demo's recipe (LoRA in MiniLM's top 3 layers) for `epochs`, fp32, on the fortunes topics."""
    import tunesuite
    from tunesuite.demos.corpora import minilm_path, write_fortunes_dataset
    from tunesuite.demos.text import RECIPE

    out = work / "text-lora"
    if (out / "all_results.json").is_file():
        return out  # trained by an earlier bench: the export side is what is measured
    data_dir = write_fortunes_dataset(work / "data" / "fortunes")
    tunesuite.finetune("text-classification", minilm_path(), str(data_dir), output_dir=str(out),
                       **{**RECIPE, "num_train_epochs": epochs}, save_strategy="no", disable_tqdm=True,
                       do_predict=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: torch's choice)")
    parser.add_argument("--runs", type=int, default=100, help="batch-1 calls timed per model")
    parser.add_argument("--work", default="runs/bench-deploy")
    parser.add_argument("--run", help="a finished run to export instead of training the text one")
    args = parser.parse_args()
    setup_process(args.threads)

    from tunesuite.publish.onnx_export import export_onnx

    work = Path(args.work)
    start = time.perf_counter()
    out = Path(args.run) if args.run else train_text(work, args.epochs)
    trained = time.perf_counter() - start
    dest = work / f"{out.name}-onnx"
    shutil.rmtree(dest, ignore_errors=True)
    start = time.perf_counter()
    export_onnx(out, dest, quantize="int8", max_metric_drop=1.0, timing_runs=args.runs)  # the bench judges
    exported = time.perf_counter() - start
    report = json.loads((dest / "deploy_report.json").read_text())
    metric, models = report["metric"], report["models"]
    base = models["pytorch_fp32"]
    sign = 1 if report["greater_is_better"] else -1  # a drop is a loss whichever way the metric points
    rows = [[name, f"{row[metric]:.4f}", f"{sign * (base[metric] - row[metric]):+.4f}", f"{row['max_logit_diff']:.1e}",
             f"{row['p50_ms']:.2f}", f"{row['p95_ms']:.2f}", f"{row['p50_ms'] / base['p50_ms']:.2f}x",
             f"{row['rows_per_s_batch32']:.0f}", f"{row['size_mb']:.1f}"] for name, row in models.items()]
    print(text_table(["model", metric, "drop", "max logit diff", "p50 ms b1", "p95 ms b1", "p50 vs fp32",
                      "rows/s b32", "MB"], rows))
    ratio = models["onnx_int8"]["p50_ms"] / base["p50_ms"]
    lost = sign * (base[metric] - models["onnx_int8"][metric])
    print(f"\nint8 latency {ratio:.2f}x PyTorch fp32 (goal <= {LATENCY_GOAL}): "
          f"{'met' if ratio <= LATENCY_GOAL else 'missed'}; {metric} drop {lost:+.4f} (goal <= {DROP_GOAL}): "
          f"{'met' if lost <= DROP_GOAL else 'missed'}")
    print(f"{out}: {report['rows']} test rows; {report['machine']}; trained in {trained:.0f} s, exported and gated in "
          f"{exported:.0f} s; report: {dest / 'deploy_report.md'}")


if __name__ == "__main__":
    main()
