"""The estimate: logged after the first timed steps of every run, reported with the actual figures and the error;
`tunesuite estimate` before training; --time-budget stops a run. No timing bounds: only that the numbers exist
and are sane."""

from __future__ import annotations

import math

import pytest

import tunesuite
from tunesuite.train import timing as estimate

FLAGS = {"per_device_train_batch_size": 8, "disable_tqdm": True, "save_strategy": "no", "learning_rate": 1e-3}


def test_every_run_reports_its_estimate_and_the_error(pretrained_bert, topic_data, tmp_path, log):
    result = tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode="full",
                                output_dir=str(tmp_path / "run"), num_train_epochs=2, **FLAGS)
    assert "estimate: ~" in log.text and "for 60 steps" in log.text  # 240 rows / 8 per batch x 2 epochs
    for key in ("estimate_epoch_s", "estimate_train_s", "actual_train_s", "estimate_peak_memory_mb", "peak_memory_mb"):
        assert result[key] > 0, key
    assert result["estimate_epoch_s"] < result["estimate_train_s"]
    assert math.isfinite(result["estimate_error"]) and result["estimate_error"] > -1
    assert result["stopped_by_time_budget"] is False


def test_time_budget_stops_training(pretrained_bert, topic_data, tmp_path, log):
    result = tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode="lora",
                                output_dir=str(tmp_path / "run"), num_train_epochs=200, time_budget="2s", **FLAGS)
    assert result["stopped_by_time_budget"] is True and math.isfinite(result["estimate_error"])
    assert "time budget 2 s reached at step" in log.text and "the 2 s time budget stops it at about" in log.text
    assert result["epoch"] < 200 and "test_accuracy" in result  # evaluated and saved all the same


def test_estimate_command_predicts_before_training(pretrained_bert, topic_data, tmp_path, capsys):
    from tunesuite.cli import main

    main(["estimate", "text-classification", "--model", str(pretrained_bert), "--dataset", str(topic_data),
          "--num-train-epochs", "3", "--per-device-train-batch-size", "8", "--output-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert "(90 steps, 30 per epoch" in out
    for line in ("time per epoch  ~", "total training  ~", "peak memory     ~"):
        assert line in out
    assert not (tmp_path / "run").exists()  # nothing trained or written where the run will go


def test_projection_adds_evaluation_passes():
    plain = estimate.project(0.5, 2.0, 100, 50, 0, 5.0)
    assert plain == {"estimate_epoch_s": 25.0, "estimate_train_s": 52.0}
    with_eval = estimate.project(0.5, 2.0, 100, 50, 2, 5.0)
    assert with_eval == {"estimate_epoch_s": 30.0, "estimate_train_s": 62.0}


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("20m", 1200), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert estimate.parse_duration(text) == seconds


def test_bad_budget_is_one_error_line(pretrained_bert, topic_data, tmp_path, capsys):
    from conftest import cli_error

    line = cli_error(capsys, "text-classification", ["--model", str(pretrained_bert), "--dataset", str(topic_data),
                                                      "--time-budget", "soon", "--output-dir", str(tmp_path / "r")])
    assert "bad duration 'soon'" in line


def test_timed_steps_are_scaled_by_their_padded_size():
    """A length-grouped order trains the longest batch first: the estimate weighs the timed steps by their padded
    size (rows x longest row) against the epoch's average step."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from tunesuite.train.timing import step_work, timed_share

    lengths = [10] * 32 + [100] * 8

    class Args:
        per_device_train_batch_size, gradient_accumulation_steps = 4, 1

    class Run:
        train_dataset, args = list(range(40)), Args()

        def _get_train_sampler(self, data):
            return LengthGroupedSampler(4, lengths=lengths, generator=torch.Generator().manual_seed(0))

    work = step_work(Run())
    assert len(work) == 10 and set(work) <= {40.0, 400.0}  # 4 rows x the longest of them
    assert work[0] == 400.0 and work.count(400.0) >= 2  # the longest batch first; 8 long rows fill 2 or more
    assert timed_share(work, 1, 3) == pytest.approx((sum(work[1:4]) / 3) / (sum(work) / 10))
    assert timed_share(work, 0, 1) > 1  # the first step is heavier than the average
    assert timed_share(None, 1, 3) == 1.0 and timed_share(work, 9, 3) == 1.0  # alike, or too few steps
