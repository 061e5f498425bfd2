"""All four modes on the real MiniLM-L6 (offline), classifying Debian fortunes quotes by topic.

    make demo-all        # or: python -m tunesuite.demos.text_modes [--modes lora full]

Prints mode, trainable %, eval/test accuracy, macro-F1 and wall time, and writes runs/text-modes.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import tunesuite
from tunesuite.demos.corpora import minilm_path, write_fortunes_dataset

# Per-mode settings: the learning rates differ by orders of magnitude between full and adapter/prompt modes.
SETTINGS = {
    "full": {"learning_rate": 5e-5, "num_train_epochs": 2},
    "frozen": {"learning_rate": 2e-3, "num_train_epochs": 4},
    "lora": {"learning_rate": 2e-3, "num_train_epochs": 3, "lora_r": 16, "lora_alpha": 32},
    "prompt": {"learning_rate": 1e-2, "num_train_epochs": 4, "num_virtual_tokens": 16},
}
COMMON = {"per_device_train_batch_size": 32, "max_seq_length": 128, "save_strategy": "no", "disable_tqdm": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    logging.getLogger("tunesuite").setLevel(logging.WARNING)
    data = write_fortunes_dataset(Path("runs/data/fortunes"))
    rows = []
    for mode in args.modes:
        start = time.perf_counter()
        result = tunesuite.finetune("text-classification", minilm_path(), str(data), mode=mode,
                                    output_dir=f"runs/text-modes/{mode}", overwrite_output_dir=True,
                                    **COMMON, **SETTINGS[mode])
        rows.append({"mode": mode, "trainable_percent": result["trainable_percent"],
                     "eval_accuracy": result["eval_accuracy"], "test_accuracy": result["test_accuracy"],
                     "test_macro_f1": result["test_macro_f1"], "seconds": time.perf_counter() - start})
        print(f"{mode}: test accuracy {result['test_accuracy']:.4f}", flush=True)
    print(f"\n{'mode':<8}{'trainable %':>12}{'eval acc':>10}{'test acc':>10}{'test F1':>9}{'time s':>8}")
    for r in rows:
        print(f"{r['mode']:<8}{r['trainable_percent']:>12.2f}{r['eval_accuracy']:>10.4f}"
              f"{r['test_accuracy']:>10.4f}{r['test_macro_f1']:>9.4f}{r['seconds']:>8.1f}")
    Path("runs/text-modes.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
