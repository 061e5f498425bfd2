"""Bad input gives one `error:` line naming the problem and the fix, and exit status 2."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import HANG_GUARD_S, cli_error

import tunesuite

ROOT = Path(__file__).resolve().parents[1]


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_cli(capsys, argv: list[str]) -> str:
    return cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, argv)


def base(tiny_bert, dataset, tmp_path, *extra):
    return ["--model", str(tiny_bert), "--dataset", str(dataset), "--output-dir", str(tmp_path / "out"),
            "--max-steps", "1", *extra]


def test_missing_column(capsys, tiny_bert, topic_data, tmp_path):
    line = run_cli(capsys, base(tiny_bert, topic_data, tmp_path, "--text-column", "sentence"))
    assert "column 'sentence' not found in the train split (columns: text, label); set --text-column" in line


def test_missing_label_column(capsys, tiny_bert, topic_data, tmp_path):
    line = run_cli(capsys, base(tiny_bert, topic_data, tmp_path, "--label-column", "topic"))
    assert "column 'topic' not found" in line and "--label-column" in line


def test_eval_label_unseen_in_train(capsys, tiny_bert, tmp_path):
    write_csv(tmp_path / "d/train.csv", [{"text": "goal team", "label": "sport"}, {"text": "oven", "label": "food"}])
    write_csv(tmp_path / "d/validation.csv", [{"text": "song", "label": "music"}])
    line = run_cli(capsys, base(tiny_bert, tmp_path / "d", tmp_path))
    assert "label 'music' in the eval split never occurs in train" in line


def test_empty_split(capsys, tiny_bert, topic_data, tmp_path):
    line = run_cli(capsys, base(tiny_bert, topic_data, tmp_path, "--max-eval-samples", "0"))
    assert "the eval split is empty" in line


def test_missing_split_name(capsys, tiny_bert, topic_data, tmp_path):
    line = run_cli(capsys, base(tiny_bert, topic_data, tmp_path, "--train-split", "training"))
    assert "no split 'training' (has: test, train, validation); set --train-split" in line


def test_empty_text_cell(capsys, tiny_bert, tmp_path):
    rows = [{"text": "goal", "label": "a"}, {"text": "oven", "label": "b"}] * 5 + [{"text": "", "label": "b"}]
    write_csv(tmp_path / "e/train.csv", rows)
    line = run_cli(capsys, base(tiny_bert, tmp_path / "e/train.csv", tmp_path, "--eval-split", "train"))
    assert "row 10, column 'text': expected text, got None; fill or drop empty rows" in line


def test_missing_dataset_file(capsys, tiny_bert, tmp_path):
    line = run_cli(capsys, base(tiny_bert, tmp_path / "nope.csv", tmp_path))
    assert "nope.csv does not exist" in line


def test_unknown_model(capsys, topic_data, tmp_path):
    line = run_cli(capsys, base(tmp_path / "no-model", topic_data, tmp_path))
    assert "no-model" in line and ("could not load" in line or "does not exist; check --model" in line)


def test_mode_the_model_cannot_take(capsys, tiny_bert, topic_data, tmp_path):
    line = run_cli(capsys, base(tiny_bert, topic_data, tmp_path, "--mode", "lora",
                                "--lora-target-modules", "q_proj"))
    assert "no module named q_proj in this bert model; pass --lora-target-modules" in line
    line = run_cli(capsys, base(tiny_bert, topic_data, tmp_path, "--mode", "frozen", "--trainable-layers", "9"))
    assert "--trainable-layers 9: the model has only 2 layers" in line


def test_multi_label_and_regression_are_inferred(tiny_bert, tmp_path):
    rows = [{"text": t, "tags": json.dumps(tags), "score": s}
            for t, tags, s in [("goal team", ["sport"], 0.5), ("oven song", ["food", "music"], 1.5)] * 20]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("\n".join(json.dumps({**r, "tags": json.loads(r["tags"])}) for r in rows))
    multi = tunesuite.finetune("text-classification", str(tiny_bert), str(jsonl), label_column="tags",
                               output_dir=str(tmp_path / "multi"), max_steps=2, disable_tqdm=True,
                               validation_split_percentage=25)
    assert {"eval_micro_f1", "eval_subset_accuracy"} <= multi.keys()
    regression = tunesuite.finetune("text-classification", str(tiny_bert), str(jsonl), label_column="score",
                                    output_dir=str(tmp_path / "reg"), max_steps=2, disable_tqdm=True,
                                    validation_split_percentage=25)
    assert {"eval_mse", "eval_mae", "eval_r2"} <= regression.keys()
    predictions = tunesuite.predict(tmp_path / "reg", ["goal team"])
    assert isinstance(predictions[0]["score"], float)


def test_real_command_line_exit_code(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "tasks/text_classification.py"), "--model", "m",
                           "--lerning-rate", "1"], capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: unknown flag --lerning-rate (did you mean '--learning-rate'?)")
