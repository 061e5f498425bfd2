"""The cross-modal PEFT benchmark's parts (bench/peft_modalities.py): a refused method is a row that says why and
takes no part in the verdict, compare's tie rule marks the table (WER: lower is better), and the Whisper arm's
decoder-only targets train on the encoder cache. Never a time, memory figure or score."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from asr_fixtures import write_tone_corpus
from image_fixtures import image_data, tiny_resnet  # noqa: F401  (fixtures)
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

import tunesuite
from tunesuite.choose.compare.table import verdict
from tunesuite.train.feature_cache import encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import peft_modalities as bench  # noqa: E402

STEPS = {**bench.RUN, "do_predict": False, "max_steps": 2, "per_device_train_batch_size": 4}


def _row(method: str, seed: int, wer: float | None, status: str = "ok") -> dict:
    return {"candidate": method, "method": method, "seed": seed, "status": status, "wall_s": 1.0,
            "metrics": {} if wer is None else {"test_wer": wer, "trainable_percent": 1.0}, "peak_memory_mb": 100.0,
            "learning_rate": 2e-3, "step_s": 0.5}


def test_table_marks_ties_by_compares_rule_and_shows_refusals():
    task = tunesuite.get_task("asr")
    rows = [_row("lora", s, w) for s, w in enumerate((0.20, 0.22, 0.21))]
    rows += [_row("hra", s, w) for s, w in enumerate((0.22, 0.24, 0.21))]  # within one std of lora: a tie
    rows += [_row("ia3", s, w) for s, w in enumerate((0.50, 0.55, 0.52))]  # far behind
    rows += [_row("boft", 0, None, "refused: mode boft: Linear layers only | x")]
    summary = bench.summary_rows(task, rows, lambda m: f"run {m}")
    winner, tied, line = verdict(task, summary)
    table = bench.markdown("wer", summary, winner, tied)
    lines = {r.split("`")[1]: r for r in table.splitlines()[2:]}
    assert "(tie)" in lines["lora"] and "(tie)" in lines["hra"] and "(tie)" not in lines["ia3"]
    assert "refused: mode boft: Linear layers only / x" in lines["boft"]  # a | would break the table
    assert "`run ia3`" in lines["ia3"] and "@ 0.002" in lines["ia3"]
    assert bench.tie_line("ctc", summary, winner, tied, line).startswith("ctc: tie: lora, hra")
    assert "no score: boft" in bench.tie_line("ctc", summary, winner, tied, line)
    saved = {"arm": "ctc", "what": "w", "summary": summary, "winner": winner, "tied": tied, "verdict": line,
             "wall_s": 90, "settings": {"max_steps": 40, "per_device_train_batch_size": 8, "seeds": [0, 1, 2]}}
    assert table in bench.show(saved) and "40 steps of 8, seeds 0 1 2" in bench.show(saved)


def test_a_refused_method_is_one_row_naming_why(tiny_resnet, image_data, tmp_path):  # noqa: F811
    spec = {**STEPS, "task": "image-classification", "mode": "boft", "seeds": [0, 1, 2],
            "model": str(tiny_resnet), "data": str(image_data), "output_dir": str(tmp_path)}
    rows = list(bench.run_method(spec))
    assert len(rows) == 1 and rows[0]["status"].startswith("refused: mode boft: Linear layers only")


def test_a_learning_rate_factor_scales_the_modes_default_for_the_models_size(tiny_resnet, image_data,  # noqa: F811
                                                                             tmp_path):
    spec = {**STEPS, "task": "image-classification", "mode": "ia3", "seeds": [0], "lr_factor": 0.3,
            "model": str(tiny_resnet), "data": str(image_data), "output_dir": str(tmp_path)}
    (row,) = bench.run_method(spec)
    small = tunesuite.MODES["ia3"].small_model_learning_rate  # the tiny ResNet is a small model
    assert row["status"] == "ok" and row["learning_rate"] == pytest.approx(0.3 * small)


def test_whisper_arm_trains_the_decoder_only_on_the_encoder_cache(tiny_whisper_model, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    data = write_tone_corpus(tmp_path / "tones", {"train": 8, "validation": 2})
    targets = bench.decoder_targets(tiny_whisper_model, "ia3")["ia3_target_modules"]
    assert targets and all(t.startswith("model.decoder.layers.") for t in targets)
    cached = []
    original = encoder.train_decoder
    monkeypatch.setattr(encoder, "train_decoder", lambda *a: cached.append(1) or original(*a))
    spec = {**STEPS, "task": "asr", "mode": "ia3", "seeds": [0], "ia3_target_modules": targets,
            "model": str(tiny_whisper_model), "data": str(data), "output_dir": str(tmp_path / "out")}
    (row,) = bench.run_method(spec)
    assert row["status"] == "ok" and cached == [1]
    assert 0 < row["metrics"]["trainable_percent"] < 100 and row["learning_rate"] is not None
    config = (tmp_path / "out" / "seed-0" / "adapter_config.json").read_text()
    assert "decoder.layers.0.encoder_attn.q_proj" in config and "encoder.layers" not in config


@pytest.mark.parametrize("arm", sorted(bench.ARMS))
def test_every_arm_names_its_task_and_metric(arm):
    found = bench.ARMS[arm]
    assert tunesuite.get_task(found.task).results.main_metric == found.metric


def test_reused_runs_are_not_rerun_and_keep_the_methods_order(tmp_path):
    args = bench.parse(["--arm", "ctc", "--methods", "lora", "boft", "--seeds", "0", "1"])
    done = [_row("boft", 0, None, "refused: mode boft: no"), _row("lora", 1, 0.3), _row("lora", 0, 0.2)]
    for row in done:
        row["method"] = row["candidate"]
    saved = []
    rows = bench.arm_runs(args, bench.ARMS["ctc"], tmp_path, tmp_path, done, saved.append)
    assert [(r["method"], r["seed"]) for r in rows] == [("lora", 0), ("lora", 1), ("boft", 0)]
    assert saved == []  # nothing ran: a refused method is not tried again, whatever the seeds
