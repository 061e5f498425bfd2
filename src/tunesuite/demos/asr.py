"""Offline speech demo: transfer learning with real (synthesised) speech, on a CPU, no downloads.

1. Source: espeak-ng reads 1,200 digit strings ("four one seven") in 24 voices. A small wav2vec2 CTC model is
   trained on them from scratch for 8 epochs: that is our "pretrained" checkpoint (kept in
   runs/asr-demo/source-model and reused while the corpus and settings stay the same).
2. Target: 9 held-out voices (other accents and voice variants) say dialling commands with new words
   ("call four one", "redial", "press nine"); 240 of them to train on, for 10 epochs.
3. The source model is fine-tuned on the target in all four modes, and the same network is trained from
   scratch on the target as the baseline. Prints mode, trainable %, WER, CER and time.

Everything runs on one torch thread (faster for a model this small, and the same numbers on any machine): about
3 CPU-minutes the first time (corpora, pretraining, five fine-tuning runs), 1 once the source model exists.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import string
import time
import warnings
from pathlib import Path
from typing import Any

from tunesuite.demos.speech_corpus import SOURCE_VOICES, TARGET_VOICES, digit_string, utterances, write_corpus
from tunesuite.files import write_text_atomic
from tunesuite.registry import register_demo
from tunesuite.tasks import ctc

ROOT = Path("runs/asr-demo")
COMMANDS = ("call", "dial", "press", "redial", "cancel")
SOURCE_SIZES = {"train": 1200, "validation": 60}
TARGET_SIZES = {"train": 240, "validation": 40, "test": 120}
COMMON = {"per_device_train_batch_size": 8, "num_train_epochs": 10, "eval_strategy": "no", "save_strategy": "no",
          "disable_tqdm": True, "logging_steps": 1000, "seed": 0}
# Pretraining: the conv front end trains too (it starts as a filterbank); evaluated on source validation each epoch.
SOURCE_TRAINING = {"num_train_epochs": 8, "learning_rate": 5e-3, "eval_strategy": "epoch",
                   "freeze_feature_encoder": False}
# Learning rates per mode: the source model was trained at 5e-3, so full fine-tuning can take 5e-3 too; the
# frozen head, adapters and prompt frames start from scratch on a frozen encoder and take 1e-2 to 3e-2.
MODES = {
    "full": {"learning_rate": 5e-3},
    "frozen": {"learning_rate": 1e-2, "trainable_layers": 1},
    "lora": {"learning_rate": 5e-3, "lora_r": 16, "lora_alpha": 32,
             "lora_target_modules": ["q_proj", "k_proj", "v_proj", "out_proj", "intermediate_dense", "output_dense"]},
    "prompt": {"learning_rate": 3e-2, "num_virtual_tokens": 16},
}
LABELS = {"full": "full", "frozen": "frozen (+ top layer)", "lora": "lora (r 16, all linear layers)",
          "prompt": "prompt (16 frames)", "scratch": "from scratch (full)"}


def command(rng: random.Random) -> str:
    word = rng.choice(COMMANDS)
    return word if word in ("redial", "cancel") else f"{word} {digit_string(rng, 1, 3)}"


def corpora(root: Path = ROOT) -> tuple[Path, Path]:
    """Source: digit strings in 24 voices. Target: dialling commands in 9 other voices (written once)."""
    rng = random.Random(0)
    source = {k: utterances([digit_string(rng) for _ in range(n)], SOURCE_VOICES, rng)
              for k, n in SOURCE_SIZES.items()}
    target = {k: utterances([command(rng) for _ in range(n)], TARGET_VOICES, rng) for k, n in TARGET_SIZES.items()}
    return write_corpus(root / "data" / "source", source), write_corpus(root / "data" / "target", target)


def gabor_bank(channels: int, kernel: int, rate: int = 16000) -> Any:
    """Band-pass filters (Gaussian-windowed cosines at four phases) on a mel scale from 100 Hz to 7 kHz: a
    first conv layer that starts out as a filterbank learns from raw audio many times faster than a random one."""
    import torch

    mel, inverse = (lambda f: 2595 * math.log10(1 + f / 700)), (lambda m: 700 * (10 ** (m / 2595) - 1))
    bands = channels // 4
    t = (torch.arange(kernel) - (kernel - 1) / 2) / rate
    rows = []
    for i in range(bands):
        freq = inverse(mel(100) + (mel(7000) - mel(100)) * i / max(bands - 1, 1))
        window = torch.exp(-0.5 * (t / min(kernel / rate / 6, 2 / (0.3 * freq))) ** 2)
        for phase in range(4):
            row = window * torch.cos(2 * math.pi * freq * t + phase * math.pi / 2)
            rows.append(row / row.norm())
    return torch.stack(rows)[:, None, :]


def new_model(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised small wav2vec2 CTC model (0.3 M parameters, 20 ms frames) with an a-z vocabulary.

    The conv front end reads 25 ms windows every 10 ms (its first layer starts as a filterbank), then halves
    the frame rate; three transformer layers of width 96 follow."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

    tokenizer = ctc.make_tokenizer(ctc.build_vocab([string.ascii_lowercase + "'"]))
    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, hidden_size=96, num_hidden_layers=3,
        num_attention_heads=4, intermediate_size=192, num_feat_extract_layers=2, conv_dim=(64, 96),
        conv_kernel=(400, 2), conv_stride=(160, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=8,
        feat_extract_norm="layer", do_stable_layer_norm=True, hidden_dropout=0.05, attention_dropout=0.05,
        activation_dropout=0.05, feat_proj_dropout=0.05, final_dropout=0.05, layerdrop=0.0, mask_time_prob=0.0,
        ctc_loss_reduction="mean", ctc_zero_infinity=True)
    model = Wav2Vec2ForCTC(config)
    first = model.wav2vec2.feature_extractor.conv_layers[0].conv
    with torch.no_grad():
        first.weight.copy_(gabor_bank(first.out_channels, first.kernel_size[0]))
    model.save_pretrained(folder)
    features = Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def pretrain(source: Path, root: Path = ROOT) -> Path:
    """The "pretrained" checkpoint: the new model trained on the source corpus (reused when present)."""
    import tunesuite

    out = root / "source-model"
    stamp = json.dumps({"corpus": (source / ".corpus").read_text(), **COMMON, **SOURCE_TRAINING}, sort_keys=True)
    if not (out / "all_results.json").exists() or not (out / "demo.json").exists() or \
            (out / "demo.json").read_text() != stamp:  # a source model from other data or settings is retrained
        (out / "demo.json").unlink(missing_ok=True)  # ours, not a run's: --overwrite-output-dir would refuse it
        tunesuite.finetune("asr", str(new_model(root / "init")), str(source), mode="full", output_dir=str(out),
                           overwrite_output_dir=True, **{**COMMON, **SOURCE_TRAINING})
        write_text_atomic(out / "demo.json", stamp)
    return out


@register_demo("automatic-speech-recognition")
def main(modes: list[str] | None = None, root: Path = ROOT) -> list[dict[str, Any]]:
    """Pretrain (once), fine-tune in each mode and from scratch; print and save the table."""
    import datasets
    import torch
    import transformers

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread, and the results do not vary
    datasets.disable_progress_bars()  # per-split bars and load reports would bury the table
    transformers.logging.disable_progress_bar()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    logging.disable(logging.WARNING)  # per-run logs would bury the table (each run's folder has its results)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecation notices from inside transformers/peft
            return _main(modes, root)
    finally:
        logging.disable(logging.NOTSET)
        torch.set_num_threads(threads)
        datasets.enable_progress_bars()
        transformers.logging.enable_progress_bar()
        transformers.logging.set_verbosity(verbosity)


def _main(modes: list[str] | None, root: Path) -> list[dict[str, Any]]:
    import tunesuite

    print("No arguments: running the offline speech demo (espeak-ng voices, wav2vec2 CTC, four modes + scratch; "
          "about 3 minutes on one CPU core, 1 once the source model exists).")
    start = time.perf_counter()
    source, target = corpora(root)
    print(f"corpora in {root}/data ({time.perf_counter() - start:.0f} s); pretraining on {SOURCE_SIZES['train']} "
          "source utterances (once: kept in source-model/)...", flush=True)
    start = time.perf_counter()
    model = pretrain(source, root)
    source_wer = json.loads((model / "all_results.json").read_text())["eval_wer"]
    print(f"source model: validation WER {source_wer:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    runs = [(mode, str(model), MODES[mode]) for mode in modes or list(MODES)]
    runs.append(("scratch", str(new_model(root / "init")), {**MODES["full"], "freeze_feature_encoder": False}))
    rows = []
    for name, base, settings in runs:
        start = time.perf_counter()
        result = tunesuite.finetune("asr", base, str(target), mode="full" if name == "scratch" else name,
                                    output_dir=str(root / name), overwrite_output_dir=True, do_predict=True,
                                    **{**COMMON, **settings})
        rows.append({"mode": LABELS[name], "trainable_percent": result["trainable_percent"],
                     "test_wer": result["test_wer"], "test_cer": result["test_cer"],
                     "seconds": time.perf_counter() - start})
        print(f"{LABELS[name]}: test WER {result['test_wer']:.3f}", flush=True)
    print(f"\n{'mode':<32}{'trainable %':>12}{'test WER':>10}{'test CER':>10}{'time s':>8}")
    for r in rows:
        print(f"{r['mode']:<32}{r['trainable_percent']:>12.2f}{r['test_wer']:>10.3f}{r['test_cer']:>10.3f}"
              f"{r['seconds']:>8.1f}")
    (root / "results.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Offline speech demo: source -> target transfer in four modes.")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    main(parser.parse_args().modes)
