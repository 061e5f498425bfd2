"""The partial feature cache per epoch: MiniLM (or another text setup) frozen with the top layer trainable, the
normal path vs the cached one, side by side in one process (rounds alternated), in wall and CPU time.

    python bench/partial.py --rows 400 --repeats 2
    python bench/partial.py --rows 400 --repeats 2 --flag bf16=true   # both sides in bf16

Each side trains one epoch on the same rows from a freshly built Trainer: uncached, `trainer.train()`; cached, the
feature pass then the top layer's training (what a run with --cache-features auto does), timed apart; "training
alone" compares the Trainer's own train_runtime of the two. "Below the top" is the time each training forward
spends before the lowest layer that trains starts: the uncached training without it gives the ideal speed-up,
all that any cache of the frozen layers could give.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import core  # noqa: E402
from core import fmt, text_table  # noqa: E402


class BelowStack:
    """Wall seconds each training forward spends before the lowest layer that trains starts (embeddings and the
    frozen layers; in the cut model, the embeddings alone): what the cache can remove from an uncached step."""

    def __init__(self, model: Any):
        import torch

        from tunesuite.train.feature_cache.partial import first_trainable_layer

        _parent, _attr, layers, k = first_trainable_layer(model)
        self.seconds, self._start, self._grad = 0.0, None, torch.is_grad_enabled
        self._handles = [model.register_forward_pre_hook(self._begin), layers[k].register_forward_pre_hook(self._end)]

    def _begin(self, *_):
        self._start = time.perf_counter() if self._grad() else None  # training steps only (not the feature pass)

    def _end(self, *_):
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def remove(self) -> float:
        for handle in self._handles:
            handle.remove()
        return self.seconds


def epoch_times(job: dict[str, Any]) -> dict[str, Any]:
    import suite
    from setups import prepare

    from tunesuite import get_task
    from tunesuite.train import feature_cache
    from tunesuite.train.recipe import build

    work = Path(job["work"])
    model, data = prepare(job.get("setup", "minilm"), work, job["size"])
    settings = {"model": str(model), "dataset": str(data), "mode": "frozen", "trainable_layers": job["layers"],
                "output_dir": str(work / "out" / "partial"), "num_train_epochs": 1, "eval_strategy": "no",
                "save_strategy": "no", "disable_tqdm": True, "seed": 0, "max_train_samples": job["rows"],
                **job.get("flags", {})}
    runs: dict[str, list[dict[str, float]]] = {"uncached": [], "cached": []}
    for i in range(job["repeats"]):
        for side in ("uncached", "cached") if i % 2 == 0 else ("cached", "uncached"):
            cfg = suite.run_config("text-classification", settings)  # before the Trainer: TrainingArguments
            trainer, prepared = build(get_task("text-classification"), cfg)  # reset accelerate's state
            below = BelowStack(trainer.model)
            wall, cpu = core.clock()
            if side == "uncached":
                metrics: dict[str, float] = {}
                train_s = trainer.train().metrics["train_runtime"]
            else:
                metrics = feature_cache.train_head(trainer, get_task("text-classification"), cfg, prepared)
                train_s = metrics["train_cached_runtime"]  # the training alone, as the uncached train_runtime
            end_wall, end_cpu = core.clock()
            runs[side].append({"wall_s": end_wall - wall, "cpu_s": end_cpu - cpu, "below_stack_s": below.remove(),
                               "extract_s": metrics.get("feature_cache_seconds", 0.0),
                               "train_s": train_s, "round": i})
            del trainer
            gc.collect()
    pairs = list(zip(runs["uncached"], runs["cached"], strict=True))
    return {"setup": job.get("setup", "minilm"), "rows": job["rows"], "layers": job["layers"], "runs": runs,
            "flags": job.get("flags", {}),
            "speedup_wall": statistics.median(u["wall_s"] / c["wall_s"] for u, c in pairs),
            "speedup_cpu": statistics.median(u["cpu_s"] / c["cpu_s"] for u, c in pairs),
            "speedup_training_alone_wall": statistics.median(u["train_s"] / c["train_s"] for u, c in pairs),
            # the uncached training without its time below the layers that train: all a cache can remove
            "ideal_training_alone_wall": statistics.median(u["train_s"] / (u["train_s"] - u["below_stack_s"])
                                                           for u, _ in pairs)}


def table(results: dict[str, Any]) -> str:
    rows = []
    for r in results.get("partial_cache") or []:
        for side, runs in r["runs"].items():
            rows.append([side, str(r["rows"]), fmt(statistics.median(x["wall_s"] for x in runs), ".1f"),
                         fmt(statistics.median(x["cpu_s"] for x in runs), ".1f"),
                         fmt(statistics.median(x["extract_s"] for x in runs), ".1f"),
                         fmt(statistics.median(x["below_stack_s"] for x in runs), ".1f")])
        rows.append(["speed-up", "", fmt(r["speedup_wall"], ".2f"), fmt(r["speedup_cpu"], ".2f"),
                     f"training alone {r['speedup_training_alone_wall']:.2f}x",
                     f"ideal {r['ideal_training_alone_wall']:.2f}x"])
    if not rows:
        return ""
    extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in r.get("flags", {}).items())
    return "\n".join([f"{r['setup']} frozen --trainable-layers {r['layers']}{extra}, one epoch: the partial cache vs "
                      "the normal path (one process, alternated; cached times include the feature pass)",
                      text_table(["side", "rows", "wall s", "CPU s", "feature pass s", "below the top s"], rows)])


def main() -> None:
    import argparse
    import json

    from setups import ROOT

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--flag", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra run setting for both sides, e.g. bf16=true")
    p.add_argument("--out", type=Path, default=HERE / "partial.json")
    args = p.parse_args()
    if args.layers < 1:
        p.error("--layers must be 1 or more: with 0 no layer trains and the head-only feature cache applies "
                "(bench/run.py measures it in its feature-cache rows)")
    core.setup_process(1)
    job = {"work": str((ROOT / "runs" / "bench").resolve()), "size": "small", "rows": args.rows,
           "layers": args.layers, "repeats": args.repeats, "flags": core.flag_values(args.flag)}
    results = {"partial_cache": [epoch_times(job)]}
    print(table(results))
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
