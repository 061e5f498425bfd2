"""Multi-label audio classification from a Whisper encoder: WhisperForAudioClassification's own loss is
cross-entropy only (so is wav2vec2's), so the run's loss is ours, binary cross-entropy per class, in every path:
the normal one (full, lora), the head cache (frozen), evaluation and a reloaded run."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import soundfile as sf
import torch
from asr_fixtures import RATE
from audio_fixtures import PITCHES, pitch_clip
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

import tunesuite

RUN = {"num_train_epochs": 2, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "warmup_steps": 0,
       "disable_tqdm": True, "seed": 3, "save_strategy": "no", "eval_strategy": "no", "augment": False,
       "learning_rate": 1e-2}


def chord(names: list[str], rng: random.Random) -> np.ndarray:
    """The tones of `names` played together: each one a label."""
    clips = [pitch_clip(PITCHES[n], rng, 0.3) for n in names]
    return (sum(clips) / len(clips)).astype(np.float32)


@pytest.fixture(scope="module")
def chords(tmp_path_factory):
    """jsonl manifests of path + a list of the tones in the clip (one or two of low / mid / high)."""
    folder, rng = tmp_path_factory.mktemp("whisper-chords"), random.Random(5)
    for split, n in {"train": 12, "validation": 4, "test": 6}.items():
        rows = []
        for i in range(n):
            names = rng.sample(list(PITCHES), 1 + i % 2)
            sf.write(folder / f"{split}-{i}.wav", chord(names, rng), RATE)
            rows.append(json.dumps({"path": f"{split}-{i}.wav", "label": names}))
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def bce(logits: torch.Tensor, hot: torch.Tensor) -> float:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, hot).item()


@pytest.mark.parametrize("mode", ["full", "frozen"])
def test_a_multi_label_whisper_run_trains_on_binary_cross_entropy(tiny_whisper_model, chords, tmp_path,  # noqa: F811
                                                                  mode):
    out = tmp_path / mode
    results = tunesuite.finetune("audio-classification", str(tiny_whisper_model), str(chords), mode=mode,
                                 output_dir=str(out), **RUN)
    assert np.isfinite(results["train_loss"]) and "test_micro_f1" in results, results
    predictor = tunesuite.load(out)
    rows = [json.loads(line) for line in (chords / "test.jsonl").read_text().splitlines()]
    names = [predictor.config.id2label[i] for i in range(len(PITCHES))]
    hot = torch.tensor([[float(n in r["label"]) for n in names] for r in rows])
    logits = predictor.logits([str(chords / r["path"]) for r in rows])
    assert logits.shape == hot.shape
    assert results["test_loss"] == pytest.approx(bce(logits, hot), rel=1e-3)  # the test loss is the BCE
    assert all(isinstance(p["labels"], list) for p in predictor.predict([str(chords / rows[0]["path"])]))
