"""--streaming: every task trains from a datasets IterableDataset; up front only a bounded sample is decoded, the
training rows are decoded on the fly (in the dataloader workers when there are some); --max-steps is required."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, cli_error
from datasets import IterableDataset
from node_helpers import RECORD, ROOT, free_port, node_env

import tunesuite
from tunesuite.cli import parse_args, run_task
from tunesuite.data import audio, image
from tunesuite.errors import TunesuiteError
from tunesuite.train.recipe import build

SAMPLE = 4
CASES = {  # task, model fixture, data fixture, what decodes one input (None: text), extra flags
    "text": ("text-classification", "tiny_bert", "topic_data", None, []),
    # an image folder streams in class order: a buffer as large as the split mixes its classes
    "image": ("image-classification", "tiny_vit", "image_data", (image, "_open"), ["--shuffle-buffer-size", "64"]),
    "speech": ("asr", "tiny_w2v", "tone_data", (audio, "load"), ["--max-duration", "0"]),
    "audio": ("audio-classification", "tiny_w2v", "pitch_data", (audio, "load"), []),
}


def streaming_argv(model, dataset, out, *extra: str) -> list[str]:
    return ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(out), "--mode", "lora",
            "--streaming", "true", "--streaming-sample", str(SAMPLE), "--shuffle-buffer-size", "16",
            "--max-steps", "2", "--per-device-train-batch-size", "4", "--disable-tqdm", "true",
            "--save-strategy", "no", "--eval-strategy", "no", "--report-to", "none", *extra]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_task_streams_decoding_rows_as_it_trains(case, request, tmp_path, monkeypatch):
    task, model, dataset, decoder, extra = CASES[case]
    calls = []
    if decoder is not None:
        module, name = decoder
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or original(*a, **k))
    cfg = parse_args(tunesuite.get_task(task), streaming_argv(request.getfixturevalue(model),
                                                              request.getfixturevalue(dataset), tmp_path, *extra))
    trainer, prepared = build(tunesuite.get_task(task), cfg)
    assert isinstance(prepared.train, IterableDataset)
    up_front = len(calls)
    assert up_front <= 3 * SAMPLE + 1  # train, eval and test samples, one row probed: never the whole split
    assert len(prepared.eval) <= SAMPLE
    assert trainer.train().global_step == 2
    if decoder is not None:
        assert len(calls) >= up_front + 2 * 4  # two batches of 4, decoded while training
    assert "eval_loss" in trainer.evaluate()


def test_images_decode_in_the_dataloader_workers_and_the_run_ends(tiny_vit, image_data, tmp_path, monkeypatch):
    """One worker: the training images open in it, so this process opens only the bounded sample."""
    calls = []
    original = image._open
    monkeypatch.setattr(image, "_open", lambda *a, **k: calls.append(1) or original(*a, **k))
    argv = streaming_argv(tiny_vit, image_data, tmp_path / "run", "--dataloader-num-workers", "1", "--do-predict",
                          "--shuffle-buffer-size", "64")
    result = run_task(tunesuite.get_task("image-classification"), argv)
    assert len(calls) <= 3 * SAMPLE + 1 + 2 * SAMPLE  # the samples, then evaluation of eval and test
    assert result["epoch"] > 0 and "test_accuracy" in result
    assert (tmp_path / "run" / "adapter_model.safetensors").exists()


def test_streaming_needs_max_steps(capsys, tiny_bert, topic_data, tmp_path):
    line = cli_error(capsys, "text-classification", ["--model", str(tiny_bert), "--dataset", str(topic_data),
                                                     "--output-dir", str(tmp_path), "--streaming", "true"])
    assert "--streaming needs --max-steps" in line


def test_a_streamed_label_the_sample_lacks_stops_the_run_naming_it(tiny_bert, tmp_path):
    rows = [{"text": "goal match team", "label": "sport"}, {"text": "song band", "label": "music"}] * 2 + \
        [{"text": "oven salt", "label": "cooking"}] * 8
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    argv = streaming_argv(tiny_bert, tmp_path / "train.jsonl", tmp_path / "run", "--validation-split-percentage",
                          "0", "--shuffle-buffer-size", "0")
    with pytest.raises(TunesuiteError, match="label 'cooking' is not among the 2 classes of the first 4 rows"):
        run_task(tunesuite.get_task("text-classification"), argv)


def test_two_process_ddp_streams_a_different_half_of_each_global_batch_to_each_rank(tiny_bert, topic_data, tmp_path):
    """accelerate launch --multi_gpu --num_processes 2 on the CPU (gloo): the main process reads the stream and
    dispatches each global batch of 2 x 4 rows; each rank computes its loss on 4 rows of its own, and only rank 0
    writes the outputs."""
    out, batches = tmp_path / "run", tmp_path / "batches"
    batches.mkdir()
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "tests/node_helpers.py"), "text-classification",
           *streaming_argv(tiny_bert, topic_data, out, "--max-steps", "3", "--do-predict")]
    proc = subprocess.run(cmd, env={**node_env(), RECORD: str(batches)}, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = {}
    for rank in (0, 1):
        steps = [json.loads(line) for line in (batches / f"rank{rank}.jsonl").read_text().splitlines()]
        assert [len(batch) for batch in steps] == [4, 4, 4], rank  # 3 steps of the per-device batch
        rows[rank] = [tuple(t for t in row if t != 0) for batch in steps for row in batch]  # padding dropped
    assert len(set(rows[0]) | set(rows[1])) == 24  # 3 global batches of 8 distinct rows: the ranks never overlap
    assert json.loads((out / "all_results.json").read_text())["epoch"] > 0
    assert (proc.stdout + proc.stderr).count("wrote 4 predictions") == 1  # the test split's sample, by rank 0 only
