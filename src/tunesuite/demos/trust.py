"""Can I trust this classifier? The evidence on the text demo's data (fortunes by topic, the real MiniLM-L6):

1. label errors: 10% of the training labels flipped on purpose (seeded), `tunesuite audit` run, the precision and
   recall of the flipped rows it finds;
2. calibration: ECE on eval and test before and after temperature scaling (--calibrate);
3. leakage: test rows copied into train exactly and nearly (case and punctuation changed), and what the duplicate
   checks report.

`python -m tunesuite.demos.trust [--rows 600] [--folds 5]` prints the figures and writes runs/trust-demo/trust.json.
Rows are subsampled (seeded) so the audit's K runs fit on a laptop; every run is frozen MiniLM (a cached head).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

from tunesuite.demos.corpora import minilm_path, write_fortunes_dataset
from tunesuite.files import write_text_atomic

OUT = Path(os.environ.get("TUNESUITE_TRUST_OUT", "runs/trust-demo"))
FLIPPED = 0.10
FAST = {"save_strategy": "no", "eval_strategy": "no", "disable_tqdm": True, "max_seq_length": 64,
        "learning_rate": 2e-2, "num_train_epochs": 10}


def _read(path: Path) -> list[list[str]]:
    return list(csv.reader(path.open(newline="")))[1:]


def _write(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def subsample(full: Path, out: Path, rows: int, seed: int = 0) -> Path:
    """train (rows), validation and test (rows // 4 each) drawn from the demo's fortunes splits."""
    rng = random.Random(seed)
    for split, n in (("train", rows), ("validation", rows // 4), ("test", rows // 4)):
        lines = _read(full / f"{split}.csv")
        _write(out / f"{split}.csv", rng.sample(lines, min(n, len(lines))))
    return out


def flip_labels(folder: Path, fraction: float = FLIPPED, seed: int = 0) -> dict[int, str]:
    """Give `fraction` of the training rows another topic (seeded); row -> the label it had."""
    rng = random.Random(seed)
    rows = _read(folder / "train.csv")
    labels = sorted({label for _, label in rows})
    flipped = {}
    for i in sorted(rng.sample(range(len(rows)), round(fraction * len(rows)))):
        flipped[i] = rows[i][1]
        rows[i][1] = rng.choice([label for label in labels if label != rows[i][1]])
    _write(folder / "train.csv", rows)
    return flipped


def _nearly(text: str, rng: random.Random) -> str:
    """The same words, case and punctuation changed."""
    words = text.replace(",", "").replace(".", "").split()
    return " ".join(w.upper() if rng.random() < 0.3 else w for w in words) + rng.choice(["!", "?", " ..."])


def leak(clean: Path, out: Path, copies: int, seed: int = 0) -> dict[str, int]:
    """A copy of `clean` whose train holds `copies` test rows verbatim and `copies` others nearly."""
    rng = random.Random(seed)
    test = _read(clean / "test.csv")
    chosen = rng.sample(range(len(test)), 2 * copies)
    train = _read(clean / "train.csv") + [test[i] for i in chosen[:copies]]
    train += [[_nearly(test[i][0], rng), test[i][1]] for i in chosen[copies:]]
    _write(out / "train.csv", train)
    for split in ("validation", "test"):
        _write(out / f"{split}.csv", _read(clean / f"{split}.csv"))
    return {"exact": copies, "near": copies}


def leakage_found(data: Path, model: str, out: Path) -> dict[str, int]:
    """The run's duplicate checks on `data` (no training): test rows reported as exact and as near copies."""
    from tunesuite import data as loading
    from tunesuite.config import resolve as config
    from tunesuite.tasks import get_task
    from tunesuite.train import duplicates, near_duplicates

    task = get_task("text-classification")
    cfg = config.resolve(task, {"model": model, "dataset": str(data), "output_dir": str(out)})
    raw = loading.load_raw(str(data), None, None)
    exact = duplicates.check(raw, cfg, out)
    near = near_duplicates.check_run(raw, cfg, out, exact)
    return {"exact": sum(s == "test" for s, *_ in exact), "near": sum(p[0] == "test" for p in near)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from tunesuite import finetune
    from tunesuite.choose.audit import audit
    from tunesuite.logs import setup_logging

    parser = argparse.ArgumentParser(prog="python -m tunesuite.demos.trust", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=600, help="training rows (validation, test: a quarter each)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=20, help="test rows copied into train, exactly and nearly")
    args = parser.parse_args(argv)
    setup_logging()
    model, start = minilm_path(), time.perf_counter()
    clean = subsample(write_fortunes_dataset(OUT / "data" / "fortunes"), OUT / "data" / "clean", args.rows)
    noisy = OUT / "data" / "flipped"
    shutil.rmtree(noisy, ignore_errors=True)
    shutil.copytree(clean, noisy)
    flipped = flip_labels(noisy)
    audited = audit("text-classification", model, str(noisy), folds=args.folds, output_dir=str(OUT / "audit"), **FAST)
    ranked = [int(r["row"]) for r in csv.DictReader((OUT / "audit" / "label_issues.csv").open())
              if r["split"] == "train"]  # most doubtful first
    found, hits = set(ranked), len(set(ranked) & set(flipped))
    top = len(set(ranked[:len(flipped)]) & set(flipped)) / len(flipped)  # among as many rows as were flipped
    calibrated = finetune("text-classification", model, str(clean), mode="frozen", calibrate=True,
                          output_dir=str(OUT / "calibrated"), overwrite_output_dir=True, **FAST)
    planted = leak(clean, OUT / "data" / "leaky", args.copies)
    reported = leakage_found(OUT / "data" / "leaky", model, OUT / "leakage")
    result = {
        "rows": {"train": args.rows, "validation": args.rows // 4, "test": args.rows // 4},
        "label_errors": {"flipped": len(flipped), "flagged_in_train": len(found), "flipped_found": hits,
                         "precision": hits / len(found) if found else 0.0, "recall": hits / len(flipped),
                         "precision_in_top_flipped_count": top,
                         "flagged_in_validation": audited["flagged"] - len(found), "folds": args.folds,
                         "out_of_fold_accuracy": audited["out_of_fold_accuracy"]},
        "calibration": {k: calibrated[k] for k in ("eval_ece", "eval_ece_calibrated", "test_ece",
                                                   "test_ece_calibrated", "test_accuracy") if k in calibrated},
        "leakage": {"planted": planted, "reported": reported},
        "seconds": round(time.perf_counter() - start),
    }
    write_text_atomic(OUT / "trust.json", json.dumps(result, indent=2))
    errors, ece = result["label_errors"], result["calibration"]
    print(f"label errors: {len(flipped)} of {args.rows} training labels flipped; the audit flagged {len(found)} "
          f"training rows, {hits} of them flipped: precision {errors['precision']:.2f}, recall {errors['recall']:.2f}; "
          f"of its {len(flipped)} most doubtful rows {top:.0%} were flipped")
    print(f"calibration: test ECE {ece.get('test_ece', float('nan')):.4f} -> "
          f"{ece.get('test_ece_calibrated', float('nan')):.4f} after temperature scaling "
          f"(eval {ece.get('eval_ece', float('nan')):.4f} -> {ece.get('eval_ece_calibrated', float('nan')):.4f})")
    print(f"leakage: {planted['exact']} test rows copied exactly and {planted['near']} nearly; reported "
          f"{reported['exact']} exact, {reported['near']} near")
    print(f"{result['seconds']} s; figures in {OUT / 'trust.json'}")
    return result


if __name__ == "__main__":
    main()
