"""The `tunesuite` command: train, eval, predict, export, push, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from tunesuite.cli import main


@pytest.fixture(scope="module")
def full_run(pretrained_bert, topic_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    main(["train", "text-classification", "--model", str(pretrained_bert), "--dataset", str(topic_data),
          "--output-dir", str(out), "--mode", "frozen", "--num-train-epochs", "3", "--learning-rate", "3e-2",
          "--disable-tqdm", "true", "--save-strategy", "no"])
    return out


def test_train_then_predict_text_lines(full_run, tmp_path, capsys):
    capsys.readouterr()
    lines = tmp_path / "texts.txt"
    lines.write_text("goal team coach the match\n\nflour and salt in the oven\n")
    main(["predict", str(full_run), str(lines)])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["goal team coach the match", "flour and salt in the oven"]
    assert [r["label"] for r in rows] == ["sport", "cooking"]


def test_eval_writes_its_own_results(full_run):
    main(["eval", str(full_run)])
    results = json.loads((full_run / "evaluation/all_results.json").read_text())
    trained = json.loads((full_run / "all_results.json").read_text())
    assert results["eval_accuracy"] == trained["eval_accuracy"]


def test_eval_on_a_single_file_uses_all_of_it(full_run, topic_data, tmp_path):
    import shutil

    single = tmp_path / "held_out.csv"
    shutil.copy(topic_data / "test.csv", single)
    main(["eval", str(full_run), "--dataset", str(single), "--do-predict", "true"])
    results = json.loads((full_run / "evaluation/all_results.json").read_text())
    trained = json.loads((full_run / "all_results.json").read_text())
    assert len((full_run / "evaluation/predictions.jsonl").read_text().splitlines()) == 30  # every row
    assert results["eval_accuracy"] == trained["test_accuracy"]  # the training run's test split, same rows


def test_export_gives_a_plain_checkpoint(full_run, tmp_path):
    from transformers import pipeline

    main(["export", str(full_run), "--merge", str(tmp_path / "plain")])
    classify = pipeline("text-classification", model=str(tmp_path / "plain"))
    assert classify("goal team coach the match")[0]["label"] == "sport"


@pytest.mark.parametrize(("argv", "message"), [
    (["fly"], "unknown command 'fly'"),
    (["train", "poetry"], "unknown task 'poetry'"),
    (["predict", "/nowhere", "x.txt"], "/nowhere holds no run_config.yaml"),
    (["eval"], "eval needs the output folder"),
])
def test_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_predict_takes_a_sentence_on_the_command_line(full_run, capsys):
    capsys.readouterr()
    main(["predict", str(full_run), "--text", "goal team coach the match", "--text", "flour and salt in the oven"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["input"], r["label"]) for r in rows] == [("goal team coach the match", "sport"),
                                                         ("flour and salt in the oven", "cooking")]


def test_run_and_export_files_follow_the_umask(full_run, tmp_path):
    """safetensors writes 0600; the run's folder, its checkpoints and an export get the user's umask mode."""
    import os

    from tunesuite.files import user_mode

    main(["export", str(full_run), "--merge", str(tmp_path / "plain")])
    files = [p for p in [*full_run.rglob("*"), *(tmp_path / "plain").rglob("*")] if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert {str(p): oct(os.stat(p).st_mode & 0o777) for p in files if os.stat(p).st_mode & 0o777 != user_mode()} == {}
