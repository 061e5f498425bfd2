"""How data set-up costs grow with the data: peak RSS and set-up time (load -> processor -> the task's preprocess,
everything before the first training step) at 1k, 10k and 100k generated rows per task (audio 1k and 10k).

    python bench/scaling.py                  # the table (about 10 min on 2 busy cores); writes bench/scaling.json
    python bench/scaling.py --sizes 1000 10000 --tasks text

Each measurement runs in a fresh process into an empty datasets cache ("cold"), then again on that cache
("cached", as a second run or a resume finds it); the largest size also cold with --preprocessing-num-workers 2
and with --streaming. RSS is the main process's peak (ru_maxrss); "grown" is that peak less the RSS right after
the imports, and the ratios divide each size's figure by the smallest size's.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from setups import ROOT, SIZES, build_bert, build_vit, build_w2v_model  # noqa: E402

TASKS = {"text": ("text-classification", [1000, 10000, 100000]), "image": ("image-classification",
                                                                          [1000, 10000, 100000]),
         "audio": ("asr", [1000, 10000])}
MARK = "SCALING-RESULT "


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_data(task: str, rows: int, folder: Path) -> Path:
    """`rows` training rows (+ 100 validation rows) of tiny generated examples; files are copies of a few blobs."""
    from conftest import WORDS, make_sentence

    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    topics = list(WORDS)
    blobs = _blobs(task, rng)
    for split, n in (("train", rows), ("validation", 100)):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["text", "label"] if task == "text" else ["path", "label"] if task == "image" else
                         ["path", "text"])
            for i in range(n):
                topic = topics[i % len(topics)]
                if task == "text":
                    out.writerow([make_sentence(rng, topic), topic])
                    continue
                name = f"files/{split}-{i}.{'png' if task == 'image' else 'wav'}"
                (folder / name).parent.mkdir(exist_ok=True)
                key = i % len(blobs)
                (folder / name).write_bytes(blobs[key][0])
                out.writerow([name, blobs[key][1]])
    (folder / "done").write_text("")
    return folder


def _blobs(task: str, rng: random.Random) -> list[tuple[bytes, str]]:
    """A few distinct encoded files and their label / transcript."""
    if task == "text":
        return []
    if task == "image":
        from image_fixtures import make_image
        from PIL import Image

        found = []
        for label in ("red", "green", "blue") * 3:
            buffer = io.BytesIO()
            Image.fromarray(make_image(rng, label)).save(buffer, format="PNG")
            found.append((buffer.getvalue(), label))
        return found
    import soundfile as sf
    from asr_fixtures import random_text, tone_audio

    found = []
    for _ in range(12):
        text, buffer = random_text(rng), io.BytesIO()
        sf.write(buffer, tone_audio(text, rng=rng), 16000, format="WAV")
        found.append((buffer.getvalue(), text))
    return found


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """One set-up in this process: load, processor, preprocess; its time and this process's peak RSS."""
    import tunesuite
    from tunesuite import data
    from tunesuite.cli import parse_args
    from tunesuite.data import streaming

    task = tunesuite.get_task(job["task"])  # every import done: `grown` is what the set-up adds
    base = _rss_mb()
    argv = ["--model", job["model"], "--dataset", job["data"], "--output-dir", job["out"], "--cache-dir",
            job["cache"], "--max-steps", "10", *job["flags"]]
    cfg = parse_args(task, argv)
    start = time.perf_counter()
    processor = task.data.load_processor(cfg.model.model, cfg)
    if cfg.data.streaming:
        prepared = streaming.prepare(task, cfg, processor)
    else:
        prepared = task.data.preprocess(data.load_raw(cfg.data.dataset, None, cfg.model.cache_dir), processor, cfg)
    seconds = time.perf_counter() - start
    next(iter(prepared.train))  # the first training row is ready
    return {"setup_s": round(seconds, 2), "peak_rss_mb": round(_rss_mb(), 1), "grown_mb": round(_rss_mb() - base, 1)}


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"})
    line = next((x for x in proc.stdout.splitlines() if x.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"measurement failed: {job}\n{proc.stderr[-3000:]}")
    return json.loads(line[len(MARK):])


def models(work: Path) -> dict[str, Path]:
    quick = SIZES["quick"]
    w2v = work / "w2v"
    if not (w2v / "config.json").exists():
        build_w2v_model(w2v, quick)
    return {"text": build_bert(work / "bert", quick)[0], "image": build_vit(work / "vit", quick)[0], "audio": w2v}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--sizes", nargs="+", type=int, help="rows per task (default: 1k 10k 100k; audio 1k 10k)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-scaling")
    p.add_argument("--out", type=Path, default=HERE / "scaling.json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(MARK + json.dumps(measure(json.loads(args.worker))), flush=True)
        return []
    import shutil
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    work = args.work.resolve()
    found, rows = models(work), []
    for name in args.tasks:
        task, sizes = TASKS[name]
        sizes = args.sizes or sizes
        for n in sizes:
            folder = write_data(name, n, work / "data" / f"{name}-{n}")
            variants = [("cold", []), ("cached", [])]
            if n == max(sizes):
                variants += [("workers 2", ["--preprocessing-num-workers", "2"]),
                             ("streaming", ["--streaming", "true"])]
            cache = Path(tempfile.mkdtemp(dir=work))
            for label, flags in variants:
                fresh = cache if label in ("cold", "cached") else Path(tempfile.mkdtemp(dir=work))
                job = {"task": task, "model": str(found[name]), "data": str(folder), "out": str(work / "out"),
                       "cache": str(fresh), "flags": flags}
                row = {"task": name, "rows": n, "run": label, **run_one(job)}
                print(json.dumps(row), flush=True)
                rows.append(row)
                if fresh != cache:
                    shutil.rmtree(fresh, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
    print("\n" + table(rows))
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per task and run kind, each size with its ratio to the smallest size's figure."""
    lines = ["| task | rows | run | set-up s | peak RSS MB | grown MB | set-up x | grown x |", "|" + "---|" * 8]
    for row in rows:
        first = next(r for r in rows if r["task"] == row["task"] and r["run"] == (
            row["run"] if row["run"] in ("cold", "cached") else "cold"))
        ratios = [f"{row[k] / first[k]:.2f}" if first[k] > 0 else "-" for k in ("setup_s", "grown_mb")]
        lines.append(f"| {row['task']} | {row['rows']:,} | {row['run']} | {row['setup_s']:.2f} | "
                     f"{row['peak_rss_mb']:.0f} | {row['grown_mb']:.0f} | {' | '.join(ratios)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
