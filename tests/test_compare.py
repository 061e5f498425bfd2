"""tunesuite compare on tiny runs: the table and plot for every candidate, a refused mode as a row, resume,
repeats (seeds, folds) with mean +- standard deviation."""

from __future__ import annotations

import json

import pytest

import tunesuite
from tunesuite.choose.compare import runs, table

COMMON = {"num_train_epochs": 2, "per_device_train_batch_size": 16, "disable_tqdm": True}


def test_compare_writes_table_and_plot_survives_a_refused_mode_and_resumes(pretrained_bert, topic_data, tmp_path,
                                                                           log):
    out = tmp_path / "cmp"
    names = ["full", "frozen", "lora", "prompt", "frozen-then-full"]
    # --trainable-layers 9: frozen (and the recipe built on it) refuse it, the model has 2 layers; the rest ignore it
    result = tunesuite.compare("text-classification", str(pretrained_bert), str(topic_data), modes=names,
                               output_dir=str(out), trainable_layers=9, **COMMON)
    rows = {s["candidate"]: s for s in result["summary"]}
    assert list(rows) == names
    for name in ("full", "lora", "prompt"):
        assert rows[name]["status"] == "ok" and 0 <= rows[name]["mean"] <= 1 and rows[name]["runs"] == 1
        assert rows[name]["trainable_percent"] > 0 and rows[name]["wall_s"] > 0 and rows[name]["peak_memory_mb"] > 0
        assert (out / name / "seed-42" / "all_results.json").is_file()  # each run's folder is kept
    assert rows["lora"]["trainable_percent"] < rows["full"]["trainable_percent"]
    for name in ("frozen", "frozen-then-full"):
        assert rows[name]["status"].startswith("refused: --trainable-layers 9") and rows[name]["mean"] is None
    text = (out / "compare.md").read_text()
    for name in names:
        assert f"| {name}" in text
    assert "refused: --trainable-layers 9" in text and "one run each: the noise is unknown" in text
    assert rows["lora"]["settings"].startswith("lr ") and "seed 42" in rows["lora"]["settings"]
    assert "lora_r 8" in rows["lora"]["settings"] and f"| {rows['lora']['settings']} |" in text
    assert "| mode |" not in log.text and "compare.md" in log.text  # the table is printed once, by the command
    assert result["winner"] in ("full", "lora", "prompt") and f"{result['winner']} **(winner)**" in text
    assert (out / "compare.png").stat().st_size > 1000
    assert json.loads((out / "compare.json").read_text())["winner"] == result["winner"]

    # interrupted after lora: its marker gone, the folder half written; a second compare reruns only lora
    (out / "lora" / "seed-42" / runs.DONE).unlink()
    log.clear()
    again = tunesuite.compare("text-classification", str(pretrained_bert), str(topic_data), modes=["full", "lora"],
                              output_dir=str(out), trainable_layers=9, **COMMON)
    assert log.text.count("finished before; skipped (resume)") == 1
    assert "compare: [2/2] lora" in log.text and (out / "lora" / "seed-42" / runs.DONE).is_file()
    assert {s["candidate"]: s["mean"] for s in again["summary"]}["full"] == rows["full"]["mean"]


def test_compare_repeats_over_folds_report_mean_and_std(pretrained_bert, topic_data, tmp_path):
    out = tmp_path / "folds"
    result = tunesuite.compare("text-classification", str(pretrained_bert), str(topic_data),
                               modes=["frozen", "lora"], folds=2, output_dir=str(out), **COMMON)
    assert sorted(p.name for p in (out / "folds").iterdir()) == ["fold-0", "fold-1"]
    for s in result["summary"]:
        assert s["runs"] == 2 and s["std"] is not None and s["std"] >= 0
        assert [f.rsplit("/", 1)[-1] for f in s["folders"]] == ["fold-0-seed-42", "fold-1-seed-42"]
    assert result["verdict"].startswith(("winner: ", "tie: "))
    assert (out / "compare.png").is_file()


def test_verdict_calls_a_difference_within_the_noise_a_tie():
    task = tunesuite.get_task("text-classification")
    close = [{"candidate": "a", "mean": 0.85, "std": 0.02}, {"candidate": "b", "mean": 0.84, "std": 0.02}]
    assert table.verdict(task, close)[:2] == (None, ["a", "b"])
    apart = [{"candidate": "a", "mean": 0.90, "std": 0.01}, {"candidate": "b", "mean": 0.84, "std": 0.02}]
    assert table.verdict(task, apart)[0] == "a"
    asr = tunesuite.get_task("asr")  # lower WER wins
    assert table.verdict(asr, [{"candidate": "a", "mean": 0.3, "std": 0.01},
                               {"candidate": "b", "mean": 0.5, "std": 0.01}])[0] == "a"


@pytest.mark.parametrize(("argv", "message"), [
    (["compare"], "compare needs a TASK first"),
    (["compare", "text-classification", "--dataset", "d"], "compare needs --model and --dataset"),
    (["compare", "text-classification", "--model", "m", "--dataset", "d", "--modes", "fly"], "unknown mode 'fly'"),
    (["compare", "text-classification", "--model", "m", "--dataset", "d", "--budget", "soon"], "bad duration 'soon'"),
])
def test_compare_bad_input_is_one_error_line(capsys, argv, message):
    from tunesuite.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_unfreeze_drops_the_learning_rate_and_the_schedule_goes_on():
    import torch
    from transformers import TrainerState, TrainingArguments, get_linear_schedule_with_warmup

    from tunesuite.modes.unfreeze import UnfreezeCallback

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, 10)
    for _ in range(5):
        optimizer.step()
        schedule.step()
    before = optimizer.param_groups[0]["lr"]
    args = TrainingArguments(output_dir="unused", learning_rate=1e-2, report_to="none")
    state = TrainerState(epoch=1.0)
    UnfreezeCallback(1, learning_rate=1e-4).on_epoch_end(args, state, None, model=model, optimizer=optimizer,
                                                         lr_scheduler=schedule)
    assert all(p.requires_grad for p in model.parameters())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(before / 100)
    optimizer.step()
    schedule.step()  # the linear decay continues, from the lower rate
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * 4 / 10)
