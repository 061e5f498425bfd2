"""--streaming without an eval split: nothing held out when evaluation is off, never more than a fraction of a
stream of known size, and a stream left with no training rows stops with one line naming the fix."""

from __future__ import annotations

import json

import pytest

import tunesuite
from tunesuite.cli import parse_args, run_task
from tunesuite.data import streaming
from tunesuite.errors import TunesuiteError

TEXT = tunesuite.TEXT_CLASSIFICATION


def write_rows(path, n: int):
    rows = [{"text": "goal match team" if i % 2 else "oven salt pan", "label": "sport" if i % 2 else "cooking"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def argv(model, dataset, out, *extra: str) -> list[str]:
    return ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(out), "--streaming", "true",
            "--max-steps", "2", "--per-device-train-batch-size", "4", "--disable-tqdm", "true",
            "--save-strategy", "no", "--report-to", "none", "--shuffle-buffer-size", "0", *extra]


def streamed(cfg) -> tuple[dict[str, int], int]:
    sample, train = streaming.sample_and_stream(cfg)
    return {k: len(v) for k, v in sample.items()}, sum(1 for _ in train)


def test_no_holdout_when_evaluation_is_off(tiny_bert, tmp_path, log):
    data = write_rows(tmp_path / "train.jsonl", 30)
    result = run_task(TEXT, argv(tiny_bert, data, tmp_path / "run", "--eval-strategy", "no"))
    assert result["epoch"] > 0 and not any(k.startswith("eval_") for k in result)  # no eval rows carved from train
    assert "no 'validation' split and no evaluation" in log.text and "held out" not in log.text
    sizes, trained = streamed(parse_args(TEXT, argv(tiny_bert, data, tmp_path / "r2", "--eval-strategy", "no")))
    assert sizes == {"train": 30} and trained == 30


def test_a_holdout_takes_at_most_a_tenth_of_a_known_stream(tiny_bert, tmp_path, log):
    data = write_rows(tmp_path / "train.jsonl", 40)
    cfg = parse_args(TEXT, argv(tiny_bert, data, tmp_path / "run", "--eval-strategy", "steps", "--eval-steps", "1"))
    assert streamed(cfg) == ({"train": 36, "validation": 4}, 36)
    assert "held out the first 4 streamed rows for evaluation" in log.text
    big = write_rows(tmp_path / "big.jsonl", 200)  # the --streaming-sample bound, 10, is under a tenth of 200
    cfg = parse_args(TEXT, argv(tiny_bert, big, tmp_path / "run", "--streaming-sample", "10"))
    assert streamed(cfg) == ({"train": 10, "validation": 10}, 190)


def test_a_stream_of_unknown_size_left_empty_names_the_fix(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "_known_rows", lambda *a: None)
    data = write_rows(tmp_path / "train.jsonl", 30)
    with pytest.raises(TunesuiteError) as info:
        run_task(TEXT, argv(tiny_bert, data, tmp_path / "run"))
    assert str(info.value) == (f"the streamed 'train' split of {data} has no rows to train on after the first 1000 "
                               "were held out for evaluation; give an eval split (--eval-split), hold out fewer "
                               "(--max-eval-samples N) or none (--validation-split-percentage 0)")


@pytest.mark.parametrize(("name", "text", "rows"), [("t.csv", "a,b\n1,2\n\n3,4\n", 2), ("t.tsv", "a\tb\n", 0),
                                                    ("t.jsonl", '{"a": 1}\n' * 50, 20)])
def test_local_rows_are_counted_up_to_what_matters(tiny_bert, tmp_path, name, text, rows):
    (tmp_path / name).write_text(text)
    cfg = parse_args(TEXT, argv(tiny_bert, tmp_path / name, tmp_path / "run"))
    assert streaming._known_rows(cfg.data, None, 20) == rows
