"""The PEFT methods across modalities: image (the image demo's self-pretrained ViT), CTC speech (the speech demo's
wav2vec2 source), audio classification (keyword spotting from that source) and Whisper tiny.en (its decoder only,
on the encoder cache). Per method: the metric's mean +- std over seeds (accuracy, or WER), trainable %, step time
and peak memory, one row each with the command that reproduces it; `compare`'s tie rule
(choose/compare/table.verdict) says which methods tie with the best. The text arm is bench/peft_methods.py.

    python bench/peft_modalities.py --arm image --seeds 0 1 2              # one arm, every method
    python bench/peft_modalities.py --arm whisper --seeds 0 --methods lora ia3
    python bench/peft_modalities.py --arm ctc --methods lora --seeds 0 --steps 5   # a smoke run

Every method trains at its mode's default learning rate for the model's size (no sweep), the same `--steps` on the
same splits. A method a mode refuses on the arm's model is a row "refused: <its error line>". One worker process
(this script again with --worker) imports the libraries once and forks a child per method that runs its seeds, so
the peak memory (resident, the whole process: the libraries, the model, the data) is the method's.
Writes bench/peft_modalities_<arm>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from peft_methods import METHODS  # noqa: E402  (the one method list: the text arm's)

MARK = "PEFT-MODALITY "
WORK = Path("runs/bench-peft-modalities")
SOURCE_EPOCHS = 10  # the image source's pretraining (the demo trains 30): a shared machine's budget
# Whisper reads every clip as a 30 s window: the encoder pass (once per clip, cached) and the test's generation are
# most of a run, so its splits are small (the Whisper demo trains on 160 and tests on 48)
WHISPER_SIZES = {"train": 64, "validation": 4, "test": 24}
WHISPER = Path("/tmp/whisper-tiny-en")  # a `tunesuite convert`ed tiny.en; else the Whisper demo converts its own


@dataclass(frozen=True)
class Arm:
    """One modality: its task, how its source model and data are built, and what every run of it shares."""

    task: str
    metric: str  # the test metric the table shows (the task's main metric)
    build: Callable[[Path], tuple[Path, Path]]  # work folder -> (source model, dataset)
    settings: dict[str, Any]
    steps: int
    what: str  # the model and data, in a few words
    targets: Callable[[Path, str], dict[str, Any]] = field(default=lambda model, method: {})  # per-method flags


def build_image(work: Path) -> tuple[Path, Path]:
    """The image demo's ViT pretrained on digits 0-4 (once), and its target task: digits 5-9, 20 images each."""
    import tunesuite
    from tunesuite.demos import image
    from tunesuite.demos.corpora import write_digits_imagefolder

    root = work / "image"
    source = root / "vit-source"
    if not (source / "all_results.json").is_file():
        data = write_digits_imagefolder(root / "data/source", image.SOURCE, {"validation": 20, "train": None})
        tunesuite.finetune("image-classification", str(image.build_initial("vit", root / "vit-init")), str(data),
                           mode="full", output_dir=str(source), overwrite_output_dir=True,
                           **{**image.COMMON, **image.SOURCE_TRAINING, "num_train_epochs": SOURCE_EPOCHS})
    target = write_digits_imagefolder(root / "data/target", image.TARGET, {"train": 20, "validation": 20, "test": None})
    return source, target


def build_ctc(work: Path) -> tuple[Path, Path]:
    """The speech demo's wav2vec2 CTC source (espeak-ng digit strings; built once in runs/asr-demo) and its target:
    dialling commands in 9 held-out voices."""
    from tunesuite.demos import asr

    source, target = asr.corpora(asr.ROOT)
    return asr.pretrain(source, asr.ROOT), target


def build_audio(work: Path) -> tuple[Path, Path]:
    """Keyword spotting (10 keywords + unknown, test voices held out) from the speech demo's source encoder."""
    from tunesuite.demos import asr, audio

    source, _ = asr.corpora(asr.ROOT)
    return asr.pretrain(source, asr.ROOT), audio.corpus("keywords", work / "audio")


def build_whisper(work: Path) -> tuple[Path, Path]:
    """Whisper tiny.en and the Whisper demo's made-up domain (train in 24 voices, test in 9 held-out voices)."""
    from tunesuite.demos import whisper_speech

    model = WHISPER if (WHISPER / "model.safetensors").is_file() else whisper_speech.checkpoint(work / "whisper")
    data, _ = whisper_speech.corpus(work / "whisper", 0, WHISPER_SIZES)
    return model, data


def decoder_targets(model: Path, method: str) -> dict[str, Any]:
    """The family's targets (q_proj, v_proj) in the decoder only, by full name: the encoder stays frozen, so its
    outputs are computed once per clip (the encoder cache) and only the decoder trains. A method with targets of
    its own (LN tuning: the norms of Whisper's layer stack, the decoder's layers) keeps them."""
    from transformers import AutoConfig

    from tunesuite.modes.peft_methods import METHODS as FIRST
    from tunesuite.modes.peft_methods_more import NEWER

    if any(m.name == method and m.find_targets for m in [*FIRST, *NEWER]):
        return {}
    layers = AutoConfig.from_pretrained(model).decoder_layers
    names = [f"model.decoder.layers.{i}.{block}.{proj}" for i in range(layers)
             for block in ("self_attn", "encoder_attn") for proj in ("q_proj", "v_proj")]
    return {f"{method}_target_modules": names}


ARMS = {
    "image": Arm("image-classification", "accuracy", build_image,
                 {"per_device_train_batch_size": 16, "augment": False, "warmup_steps": 0.1}, 40,
                 "the image demo's ViT (4 layers, width 64) pretrained on digits 0-4 -> digits 5-9, 100 images"),
    "ctc": Arm("asr", "wer", build_ctc, {"per_device_train_batch_size": 8}, 40,
               "the speech demo's wav2vec2 CTC (0.3M) -> dialling commands, 240 clips, 9 held-out test voices"),
    "audio": Arm("audio-classification", "accuracy", build_audio,
                 {"per_device_train_batch_size": 16, "max_duration": 3.0}, 40,
                 "the speech demo's wav2vec2 encoder -> 11 keywords, 264 clips, 9 held-out test voices"),
    "whisper": Arm("asr", "wer", build_whisper, {"per_device_train_batch_size": 8, "warmup_steps": 0}, 16,
                   "Whisper tiny.en, decoder q/v only, encoder cache -> a made-up domain, 64 clips, 24 test",
                   targets=decoder_targets),
}
RUN = {"eval_strategy": "no", "save_strategy": "no", "do_predict": True, "disable_tqdm": True,
       "skip_duplicate_check": True, "logging_steps": 1000, "per_device_eval_batch_size": 16}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arm", choices=list(ARMS), required=False)
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, help="optimizer steps per run (default: the arm's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1: steady on a shared machine)")
    p.add_argument("--lr-factor", type=float, default=1.0,
                   help="every run's learning rate as this multiple of its mode's default for the model's size (the "
                        "sweep: 0.3, 1, 3; each factor its own --out)")
    p.add_argument("--out", type=Path, help="default: bench/peft_modalities_<arm>.json")
    p.add_argument("--reuse", type=Path, nargs="*", default=[],
                   help="earlier results (their JSON): a run of the same method and seed is taken, not rerun")
    p.add_argument("--show", type=Path, nargs="+", help="print the tables of earlier results (their JSON), run nothing")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.worker and not args.arm and not args.show:
        p.error(f"--arm is required: one of {', '.join(ARMS)}")
    return args


def worker(specs: list[dict[str, Any]]) -> None:
    """Every method's runs, quiet: the libraries are imported once here, then each method runs in a child forked
    from this process (its peak memory is its own: this process's resident memory plus what the method adds), one
    marked line per run (or refusal) on stdout."""
    import logging
    import traceback
    import warnings

    import datasets
    import peft  # noqa: F401  (imported before the fork: the children start with it)
    import torch
    import transformers

    import tunesuite
    from tunesuite.train import recipe  # noqa: F401

    torch.set_num_threads(specs[0]["threads"])
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.getLogger("tunesuite").setLevel(logging.WARNING)
    warnings.simplefilter("ignore")
    tunesuite.get_task(specs[0]["task"])
    for spec in specs:
        sys.stdout.flush()
        child = os.fork()
        if child == 0:
            code = 0
            try:
                for row in run_method(spec):
                    print(MARK + json.dumps({"method": spec["mode"], **row}, default=str), flush=True)
            except BaseException as e:  # noqa: BLE001  (the child must end here, whatever happened)
                line = (traceback.format_exception_only(type(e), e) or ["?"])[-1].strip()
                print(MARK + json.dumps({"method": spec["mode"], "seed": spec["seeds"][0],
                                         "status": f"failed: {line[:200]}"}), flush=True)
                code = 1
            sys.stdout.flush()
            os._exit(code)
        _, status = os.waitpid(child, 0)
        if os.WIFSIGNALED(status):  # killed (the out-of-memory killer sends 9): its runs after the last line are lost
            print(MARK + json.dumps({"method": spec["mode"], "seed": -1, "status": "failed: killed by signal "
                                     f"{os.WTERMSIG(status)} (9: out of memory?)"}), flush=True)


def run_method(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One method's runs, one per seed: its metrics, wall time, learning rate and the process's peak resident
    memory so far; a refusal (the mode's error line) ends it, as it does not depend on the seed."""
    import resource

    import tunesuite
    from tunesuite.errors import TunesuiteError

    spec = dict(spec)
    spec.pop("threads", None)
    task, model, data, out = spec.pop("task"), spec.pop("model"), spec.pop("data"), Path(spec.pop("output_dir"))
    factor = spec.pop("lr_factor", 1.0)
    if factor != 1:  # the mode's default for this model's size (what `--mode NAME` would take), scaled
        from tunesuite import registry
        from tunesuite.config.resolve import count_params

        default = registry.modes()[spec["mode"]].learning_rate_for(count_params(model))
        spec["learning_rate"] = float(f"{factor * default:.2g}")
    for seed in spec.pop("seeds"):
        folder = out / f"seed-{seed}"
        shutil.rmtree(folder, ignore_errors=True)  # a killed run's leftovers would stop the next one
        start = time.perf_counter()
        try:
            metrics = tunesuite.finetune(task, model, data, seed=seed, data_seed=seed, output_dir=str(folder),
                                         overwrite_output_dir=True, **spec)
        except TunesuiteError as e:
            yield {"seed": seed, "status": f"refused: {e}"}
            return
        yield {"seed": seed, "status": "ok", "metrics": metrics, "wall_s": time.perf_counter() - start,
               "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "learning_rate": learning_rate(folder)}


def learning_rate(folder: Path) -> float | None:
    """The rate the run trained at (the mode's default for the model's size), from its saved config."""
    import yaml

    try:
        config = yaml.safe_load((folder / "run_config.yaml").read_text())
    except OSError:
        return None
    found = _find(config, "learning_rate")
    return float(found) if found is not None else None


def _find(tree: Any, key: str) -> Any:
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        return next((v for v in (_find(x, key) for x in tree.values()) if v is not None), None)
    return None


def arm_runs(args: argparse.Namespace, arm: Arm, model: Path, data: Path, done: list[dict[str, Any]],
             save: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """Every method's seeds on the arm not `done` already, in one fresh worker process (a child per method): one
    row per run, or one refused / failed row per method; each run is printed and `save`d (with `done`) as it ends."""
    steps = args.steps or arm.steps
    have = {(r["method"], r["seed"]) for r in done}
    todo = {m: [s for s in args.seeds if (m, s) not in have] for m in args.methods
            if not any(r["method"] == m and r["status"].startswith("refused") for r in done)}
    specs = [{**RUN, **arm.settings, **arm.targets(model, method), "task": arm.task, "mode": method,
              "max_steps": steps, "seeds": seeds, "threads": args.threads, "lr_factor": args.lr_factor,
              "model": str(model), "data": str(data), "output_dir": str(WORK / args.arm / "runs" / method)}
             for method, seeds in todo.items() if seeds]
    rows, error, start = list(done), "", time.perf_counter()
    # the runs' own output: a file (a pipe read at the end fills and blocks), one per --out (arms may run side by side)
    log = WORK / args.arm / f"worker-{args.out.stem if args.out else args.arm}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if specs:
        command = [sys.executable, __file__, "--worker", json.dumps(specs)]
        with log.open("w") as stderr, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                                       text=True) as worker_process:
            for line in worker_process.stdout:  # type: ignore[union-attr]
                if line.startswith(MARK):
                    rows.append(as_row(json.loads(line[len(MARK):])))
                    score = rows[-1]["metrics"].get(f"test_{arm.metric}")
                    print(f"{rows[-1]['method']} seed {rows[-1]['seed']}: {rows[-1]['status']}"
                          + (f" test {arm.metric} {score:.4f}" if score is not None else "")
                          + f" ({time.perf_counter() - start:.0f} s)", flush=True)
                    save(rows)
        error = log.read_text(errors="replace")
    for spec in specs:
        if not any(r["method"] == spec["mode"] for r in rows):
            rows.append(as_row({"method": spec["mode"], "seed": spec["seeds"][0],
                                "status": "failed: " + (error.strip().splitlines() or ["no output"])[-1][:200]}))
    order = {m: i for i, m in enumerate(dict.fromkeys([*args.methods, *(r["method"] for r in rows)]))}
    return sorted(rows, key=lambda r: (order[r["method"]], r["seed"]))


def as_row(run: dict[str, Any]) -> dict[str, Any]:
    """A worker's line as compare's row (candidate, status, metrics, wall_s, peak_memory_mb) plus step time."""
    metrics = run.get("metrics", {})
    per_second = metrics.get("train_steps_per_second")
    return {"candidate": run["method"], "method": run["method"], "seed": run["seed"], "status": run["status"],
            "metrics": metrics, "wall_s": run.get("wall_s"), "peak_memory_mb": run.get("peak_memory_mb"),
            "learning_rate": run.get("learning_rate"), "step_s": 1 / per_second if per_second else None}


def summary_rows(task: Any, rows: list[dict[str, Any]], command: Callable[[str], str]) -> list[dict[str, Any]]:
    """compare's summary per method (mean +- std, trainable %, peak memory) plus step time, rate and command."""
    from tunesuite.choose.compare.table import summarize

    summary = summarize(task, rows)
    for s in summary:
        mine = [r for r in rows if r["candidate"] == s["candidate"]]
        steps = [r["step_s"] for r in mine if r["step_s"]]
        s["step_s"] = statistics.fmean(steps) if steps else None
        s["learning_rate"] = next((r["learning_rate"] for r in mine if r.get("learning_rate")), None)
        s["command"] = command(s["candidate"])
    return summary


def markdown(metric: str, summary: list[dict[str, Any]], winner: str | None, tied: list[str]) -> str:
    """One row per method, the stacked style: the numbers, then the command that reproduces them; a refused or
    failed method says why in its metric's cell."""
    lines = [f"| method @ learning rate | test {metric} | seeds | trainable % | step s | peak MiB | reproduce |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        best = " **(winner)**" if s["std"] is not None else " (best of one run each)"
        mark = best if s["candidate"] == winner else " (tie)" if s["candidate"] in tied else ""
        rate = f" @ {s['learning_rate']:g}" if s.get("learning_rate") else ""
        if s["mean"] is None:
            score = s["status"].replace("|", "/")
        else:
            score = f"{s['mean']:.4f}" + (f" ± {s['std']:.4f}" if s["std"] else "")
        cells = [f"`{s['candidate']}`{rate}{mark}", score, str(s["runs"]),
                 "-" if s["trainable_percent"] is None else f"{s['trainable_percent']:.2f}",
                 "-" if s["step_s"] is None else f"{s['step_s']:.3f}",
                 "-" if s["peak_memory_mb"] is None else f"{s['peak_memory_mb']:.0f}", f"`{s['command']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tie_line(arm: str, summary: list[dict[str, Any]], winner: str | None, tied: list[str], line: str) -> str:
    """The modality's verdict in one line: the winner, or who ties with the best (compare's rule)."""
    if winner and not tied:
        return f"{arm}: {line}"
    refused = [s["candidate"] for s in summary if s["mean"] is None]
    return f"{arm}: {line}" + (f"; no score: {', '.join(refused)}" if refused else "")


def show(result: dict[str, Any]) -> str:
    """An arm's saved results as its table, verdict line, settings and wall time."""
    summary, arm = result["summary"], result["arm"]
    settings = result["settings"]
    return "\n".join([f"{arm}: {result['what']}; {settings['max_steps']} steps of "
                      f"{settings['per_device_train_batch_size']}, seeds {' '.join(map(str, settings['seeds']))}",
                      "", markdown(ARMS[arm].metric, summary, result["winner"], result["tied"]), "",
                      tie_line(arm, summary, result["winner"], result["tied"], result["verdict"]),
                      f"wall time {result['wall_s'] / 60:.1f} min"])


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.show:
        for file in args.show:
            print(show(json.loads(file.read_text())) + "\n")
        return
    import torch

    import tunesuite
    from tunesuite.choose.compare.table import verdict
    from tunesuite.files import write_text_atomic

    torch.set_num_threads(args.threads)  # the source models are built in this process
    arm, started = ARMS[args.arm], time.perf_counter()
    model, data = arm.build(WORK)
    print(f"{args.arm}: {arm.what}; model {model}, data {data} ({time.perf_counter() - started:.0f} s to build)",
          flush=True)
    steps, out = args.steps or arm.steps, args.out or HERE / f"peft_modalities_{args.arm}.json"
    done = [r for file in args.reuse for r in json.loads(file.read_text())["runs"]
            if r["status"] == "ok" or r["status"].startswith("refused")]
    if done:
        print(f"reused: {len(done)} runs of {', '.join(dict.fromkeys(r['method'] for r in done))}", flush=True)
    task = tunesuite.get_task(arm.task)

    def command(method: str) -> str:
        factor = f" --lr-factor {args.lr_factor:g}" if args.lr_factor != 1 else ""
        return (f"python bench/peft_modalities.py --arm {args.arm} --methods {method} --seeds "
                f"{' '.join(map(str, args.seeds))} --steps {steps}{factor}")

    def save(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None, list[str], str]:
        summary = summary_rows(task, rows, command)
        winner, tied, line = verdict(task, summary)
        write_text_atomic(out, json.dumps(
            {"arm": args.arm, "what": arm.what, "summary": summary, "runs": rows, "verdict": line, "winner": winner,
             "tied": tied, "wall_s": time.perf_counter() - started,
             "settings": {**RUN, **arm.settings, "max_steps": steps, "seeds": args.seeds, "threads": args.threads,
                          "lr_factor": args.lr_factor}},
            indent=2, default=str))
        return summary, winner, tied, line

    summary, winner, tied, line = save(arm_runs(args, arm, model, data, done, save))
    print(markdown(arm.metric, summary, winner, tied))
    print("\n" + tie_line(args.arm, summary, winner, tied, line)
          + f"\nwall time {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
