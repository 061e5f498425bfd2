"""Keyword spotting without training: the real Whisper tiny.en's decoder scores each keyword as the transcript of a
clip (`--mode zero-shot` on the audio task). The audio demo's espeak-ng keywords (yes, no, up, ... off), spoken in
its 9 held-out test voices; the demo's "unknown" rows are left out (no text describes them).

    python bench/zero_shot_speech.py [--model /tmp/whisper-tiny-en] [--test-rows 60]

One `tunesuite.finetune` run gives the suite's own answer (test accuracy, wall time). Then, from the same run's
model, each clip is encoded once and the class texts are rescored in variants side by side: the label as is
("yes"), with a full stop ("yes."), capitalised ("Yes."), each by mean log-probability per token (the scorer's
choice) and by sum. Prints a table; writes bench/zero_shot_speech.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
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

from tunesuite.demos.audio import KEYWORDS, corpus  # noqa: E402
from tunesuite.files import write_text_atomic  # noqa: E402

VARIANTS = {"yes": lambda w: w, "yes.": lambda w: w + ".", "Yes.": lambda w: w.capitalize() + "."}


def keyword_split(source: Path, dest: Path, rows: dict[str, int]) -> Path:
    """The demo's manifests without the "unknown" rows, cut to `rows` per split (test: its first rows, every keyword
    in turn, in the held-out voices)."""
    dest.mkdir(parents=True, exist_ok=True)
    for split, n in rows.items():
        with (source / f"{split}.csv").open(newline="") as f:
            kept = [r for r in csv.DictReader(f) if r["label"] in KEYWORDS][:n]
        with (dest / f"{split}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "label"])
            writer.writeheader()
            writer.writerows(kept)
    return dest


def variants(out: Path, data: Path, model_path: str) -> dict[str, dict[str, float]]:
    """Accuracy of each text variant, by mean and by sum, from one encoder pass per test clip."""
    import torch
    from transformers import AutoTokenizer

    import tunesuite
    from tunesuite.modes import speech_scorer

    predictor = tunesuite.load(out)
    model, scorer = predictor.model, predictor.model.scorer
    tokenizer = AutoTokenizer.from_pretrained(model_path)  # the run keeps the class texts as token ids
    with (data / "test.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    truth = torch.tensor([names.index(r["label"]) for r in rows])
    encoded = []
    with torch.no_grad():
        for start in range(0, len(rows), 8):
            batch = predictor.task.data.make_batch(predictor.processor, [r["path"] for r in rows[start:start + 8]],
                                                   model.config)
            encoded.append(model.get_encoder()(batch["input_features"]).last_hidden_state)
    encoded = torch.cat(encoded)
    found = {}
    for name, spell in VARIANTS.items():
        speech_scorer.set_texts(scorer, tokenizer, [spell(n) for n in names])
        with torch.no_grad():
            scores, mask = scorer.token_log_probs(encoded)
        total = scores.sum(-1)
        found[name] = {"mean": float(((total / mask.sum(-1)).argmax(1) == truth).float().mean()),
                       "sum": float((total.argmax(1) == truth).float().mean())}
        print(f"{name!r:>8}: accuracy mean {found[name]['mean']:.3f}, sum {found[name]['sum']:.3f}", flush=True)
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import tunesuite

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/whisper-tiny-en", help="a transformers Whisper folder (tiny.en: "
                                                                        "`tunesuite convert` of the CTranslate2 one)")
    parser.add_argument("--test-rows", type=int, default=60)
    parser.add_argument("--output", default=str(HERE / "zero_shot_speech.json"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="zero-shot-speech-"))
    data = keyword_split(corpus("keywords", work), work / "keywords", {"train": 10, "validation": 10,
                                                                       "test": args.test_rows})
    start = time.perf_counter()
    result = tunesuite.finetune("audio-classification", args.model, str(data), mode="zero-shot",
                                output_dir=str(work / "out"), max_duration=3.0, per_device_eval_batch_size=8,
                                disable_tqdm=True, report_to="none", do_predict=True)
    seconds = time.perf_counter() - start
    print(f"zero-shot run: test accuracy {result['test_accuracy']:.3f} (chance {1 / len(KEYWORDS):.3f}) in "
          f"{seconds:.0f}s, {args.test_rows} test + 10 validation clips", flush=True)
    summary = {"model": args.model, "classes": len(KEYWORDS), "chance": 1 / len(KEYWORDS),
               "test_rows": args.test_rows, "run": {"test_accuracy": result["test_accuracy"], "seconds": seconds,
                                                   "setup_seconds": result["setup_runtime"],
                                                   "test_seconds": result.get("test_runtime")},
               "variants": variants(work / "out", data, args.model)}
    write_text_atomic(Path(args.output), json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
