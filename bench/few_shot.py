"""How far do few labels get? The real MiniLM on the fortunes topics, side by side in one run: zero-shot (no labels),
no-update few-shot at K per class, LoRA at K per class and on all the data, and SetFit (the peer library) at K.

    python bench/few_shot.py                       # every arm, K=8, 3 seeds: hours on 2 busy cores (LoRA, SetFit)
    python bench/few_shot.py --arms zero few setfit few-all --setfit-iterations 2   # without the slow LoRA runs

Prints one table (test accuracy mean +- std over seeds, wall seconds per run) and writes bench/few_shot.json.
Every arm sees the same test split; the K examples per class are the same draw for every arm at one seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from tunesuite.demos.corpora import DEMO_TOPICS, minilm_path, write_fortunes_dataset  # noqa: E402
from tunesuite.files import write_text_atomic  # noqa: E402

PROMPT = "This quote is about {label}."
ARMS = ("zero", "few", "few-knn", "lora", "setfit", "setfit-mode", "few-all", "lora-all")
COMMON = {"max_seq_length": 64, "per_device_eval_batch_size": 64, "disable_tqdm": True, "report_to": "none",
          "save_strategy": "no", "overwrite_output_dir": True}


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)


def subset(full: Path, dest: Path, shots: int | None, seed: int, eval_rows: int) -> Path:
    """The data folder for one run: K training rows per class (a seeded draw; None: all), a small validation split
    (the Trainer's, not measured), the whole test split."""
    train = _read(full / "train.csv")
    if shots is not None:
        rng, picked = random.Random(seed), []
        for topic in DEMO_TOPICS:
            picked += rng.sample([r for r in train if r["label"] == topic], shots)
        train = picked
    _write(dest / "train.csv", train)
    _write(dest / "validation.csv", _read(full / "validation.csv")[:eval_rows])
    _write(dest / "test.csv", _read(full / "test.csv"))
    return dest


def run_tunesuite(data: Path, out: Path, mode: str, seed: int, **flags: Any) -> dict[str, Any]:
    import tunesuite

    start = time.perf_counter()
    result = tunesuite.finetune("text-classification", minilm_path(), str(data), mode=mode, output_dir=str(out),
                                seed=seed, **COMMON, **flags)
    return {"accuracy": result["test_accuracy"], "seconds": time.perf_counter() - start}


def run_setfit(data: Path, seed: int, iterations: int) -> dict[str, Any]:
    """SetFit's own recipe: contrastive pairs fine-tune the body, then a logistic-regression head."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    start = time.perf_counter()
    train, test = _read(data / "train.csv"), _read(data / "test.csv")
    model = SetFitModel.from_pretrained(minilm_path())
    model.model_body.max_seq_length = COMMON["max_seq_length"]
    args = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=iterations, seed=seed,
                             show_progress_bar=False, output_dir=str(data / "setfit-checkpoints"))  # not the cwd
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(train))
    trainer.train()
    predicted = model.predict([r["text"] for r in test])
    hits = sum(p == r["label"] for p, r in zip(predicted, test, strict=True))
    return {"accuracy": hits / len(test), "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3, help="draws of the K examples (cheap arms; LoRA-all: 1)")
    parser.add_argument("--setfit-seeds", type=int, default=1)
    parser.add_argument("--setfit-iterations", type=int, default=20, help="SetFit's num_iterations (its default)")
    parser.add_argument("--lora-epochs", type=float, default=10.0, help="LoRA at K per class")
    parser.add_argument("--full-epochs", type=float, default=1.0, help="LoRA on all the training data")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS),
                        help="which arms run (lora-all is the slowest; few-all: centroids of every training row)")
    parser.add_argument("--neighbours", type=int, default=5, help="few-knn: how many nearest examples vote")
    parser.add_argument("--eval-rows", type=int, default=40)
    parser.add_argument("--output", default=str(HERE / "few_shot.json"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="few-shot-bench-"))
    full = write_fortunes_dataset(work / "full")
    k, runs = args.shots, {}

    def arm(name: str, result: dict[str, Any]) -> None:
        runs.setdefault(name, []).append(result)
        print(f"{name}: accuracy {result['accuracy']:.3f} in {result['seconds']:.0f}s", flush=True)

    zero = subset(full, work / "zero", None, 0, args.eval_rows)
    if "zero" in args.arms:
        arm("zero-shot", run_tunesuite(zero, work / "out-zero", "zero-shot", 0, label_prompt=PROMPT))
    for seed in range(args.seeds):
        data = subset(full, work / f"k{k}-s{seed}", k, seed, args.eval_rows)
        if "few" in args.arms:
            arm(f"few-shot K={k}", run_tunesuite(data, work / f"out-few-s{seed}", "few-shot", seed, shots=k))
        if "few-knn" in args.arms:
            arm(f"few-shot knn K={k}", run_tunesuite(data, work / f"out-knn-s{seed}", "few-shot", seed, shots=k,
                                                     few_shot_scorer="knn", neighbours=args.neighbours))
        if "lora" in args.arms:
            arm(f"lora K={k}", run_tunesuite(data, work / f"out-lora-s{seed}", "lora", seed,
                                             num_train_epochs=args.lora_epochs, per_device_train_batch_size=8,
                                             eval_strategy="no"))
        if "setfit" in args.arms and seed < args.setfit_seeds:
            arm(f"setfit K={k}", run_setfit(data, seed, args.setfit_iterations))
        if "setfit-mode" in args.arms and seed < args.setfit_seeds:  # ours: setfit's body, centroid classes
            arm(f"--mode setfit K={k}", run_tunesuite(data, work / f"out-setfit-s{seed}", "setfit", seed, shots=k,
                                                      setfit_iterations=args.setfit_iterations))
    if "few-all" in args.arms:
        arm("few-shot all", run_tunesuite(zero, work / "out-few-all", "few-shot", 0, shots=-1))
    if "lora-all" in args.arms:
        arm("lora all", run_tunesuite(zero, work / "out-lora-all", "lora", 0, num_train_epochs=args.full_epochs,
                                      per_device_train_batch_size=16, eval_strategy="no"))
    train_rows = len(_read(full / "train.csv"))
    table = {name: {"accuracy_mean": statistics.mean(r["accuracy"] for r in rs),
                    "accuracy_std": statistics.pstdev(r["accuracy"] for r in rs),
                    "seconds_mean": statistics.mean(r["seconds"] for r in rs), "runs": len(rs)}
             for name, rs in runs.items()}
    summary = {"classes": len(DEMO_TOPICS), "chance": 1 / len(DEMO_TOPICS), "train_rows": train_rows,
               "test_rows": len(_read(full / "test.csv")), "shots": k, "prompt": PROMPT,
               "neighbours": args.neighbours, "arms": table}
    print(f"\n{len(DEMO_TOPICS)} topics, chance {1 / len(DEMO_TOPICS):.3f}; train {train_rows} rows; "
          f"test {summary['test_rows']} rows")
    print(f"{'arm':<16} {'test accuracy':>18} {'seconds':>9} {'runs':>5}")
    for name, row in table.items():
        print(f"{name:<16} {row['accuracy_mean']:>10.3f} +- {row['accuracy_std']:.3f} "
              f"{row['seconds_mean']:>9.0f} {row['runs']:>5}")
    write_text_atomic(Path(args.output), json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
