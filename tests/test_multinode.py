"""Multi-node through Accelerate: two 'machines' on this host (one process each, gloo on the CPU) train a LoRA text
job (killed half-way on machine 1, then resumed) and a speech job to the end with the metrics of one process at the
same global batch (2 x 4 = 8); only the main process of the main machine writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, write_topic_csvs
from node_helpers import KILL_AFTER, ROOT, node_env, run_pair
from safetensors.torch import load_file

import tunesuite

TEXT = str(ROOT / "tasks/text_classification.py")
COMMON = ["--mode", "lora", "--lora-dropout", "0", "--learning-rate", "3e-2", "--seed", "3", "--disable-tqdm",
          "true", "--eval-strategy", "no", "--do-predict", "--max-steps", "8"]
PEER_GONE_S = 300  # a machine whose peer died may wait on it: killed after this long (a hang guard, not a speed)


def scores(results: dict) -> dict:
    """The evaluation metrics of a run, without its timings."""
    return {k: v for k, v in results.items() if k.startswith(("eval_", "test_"))
            and not k.endswith(("runtime", "per_second"))}


def assert_same(two: dict, one: dict) -> None:
    assert scores(two).keys() == scores(one).keys() and scores(one)
    for key, value in scores(one).items():  # the same sums, added in another order: float rounding apart
        assert two[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


@pytest.fixture(scope="module")
def bert_no_dropout(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT without dropout: each process draws its own dropout masks, which would part the runs."""
    import shutil

    path = tmp_path_factory.mktemp("bert-no-dropout") / "bert"
    shutil.copytree(tiny_bert, path)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def text_case(bert_no_dropout, tmp_path_factory):
    """(model, data, the one-process run's results and folder): 64 rows, 8 steps of 8, LoRA."""
    root = tmp_path_factory.mktemp("multinode-text")
    data = write_topic_csvs(root / "data", n_train=64, n_eval=16)
    out = root / "one"
    results = tunesuite.finetune("text-classification", str(bert_no_dropout), str(data), mode="lora", lora_dropout=0.0,
                                 learning_rate=3e-2, seed=3, disable_tqdm=True, eval_strategy="no", do_predict=True,
                                 max_steps=8, per_device_train_batch_size=8, save_strategy="no",
                                 output_dir=str(out))
    return bert_no_dropout, data, results, out


def test_two_machines_train_lora_text_like_one_process_and_resume_when_one_dies(text_case, tmp_path):
    """Machine 1 is SIGKILLed right after checkpoint-4 (of 8 steps); machine 0 fails on its next collective. The
    same two commands with --resume-from-checkpoint auto go on from checkpoint-4 and end as one process does:
    the same metrics and adapter weights."""
    model, data, one, one_out = text_case
    out = tmp_path / "run"  # a shared disk, as a resume needs
    args = ["--model", str(model), "--dataset", str(data), *COMMON, "--per-device-train-batch-size", "4",
            "--save-strategy", "steps", "--save-steps", "4", "--output-dir", str(out)]
    killed = run_pair(str(ROOT / "tests/node_helpers.py"), [["text-classification", *args]] * 2, PEER_GONE_S,
                      env={**node_env(), KILL_AFTER: "4"})
    assert all(rc != 0 for rc, _ in killed), killed[1][1][-2000:]
    assert (out / "checkpoint-4").is_dir() and not (out / "checkpoint-8").exists()
    assert not (out / "all_results.json").exists()
    done = run_pair(TEXT, [args + ["--resume-from-checkpoint", "auto"]] * 2, HANG_GUARD_S)
    assert [rc for rc, _ in done] == [0, 0], done[0][1][-3000:] + done[1][1][-3000:]
    assert f"resume auto: {out / 'checkpoint-4'}" in done[0][1]
    assert json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())["global_step"] == 8
    assert_same(json.loads((out / "all_results.json").read_text()), one)
    assert "".join(log for _, log in done).count("wrote 16 predictions") == 1
    trained, alone = (load_file(p / "adapter_model.safetensors") for p in (out, one_out))
    assert trained.keys() == alone.keys()
    for key in trained:
        assert (trained[key] - alone[key]).abs().max() < 1e-5, key


def test_two_machines_train_speech_like_one_process_and_only_the_main_one_writes(tiny_w2v, tone_data, tmp_path):
    """Each machine its own --output-dir (as on hosts without a shared disk): machine 1's stays unwritten. Random
    order, not the task's length-grouped one: transformers groups lengths in mega-batches sized by the
    per-device batch, so 2 x 4 and 1 x 8 would see other batches (the text case's 64 rows give equal ones)."""
    flags = {"mode": "lora", "lora_r": 4, "lora_dropout": 0.0, "learning_rate": 1e-3, "max_steps": 4, "seed": 0,
             "warmup_steps": 0, "disable_tqdm": True, "eval_strategy": "no", "save_strategy": "no",
             "do_predict": True, "train_sampling_strategy": "random"}
    one = tunesuite.finetune("asr", str(tiny_w2v), str(tone_data), output_dir=str(tmp_path / "one"),
                             per_device_train_batch_size=8, **flags)
    args = ["--model", str(tiny_w2v), "--dataset", str(tone_data), "--per-device-train-batch-size", "4"]
    for key, value in flags.items():
        args += [f"--{key.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    done = run_pair(str(ROOT / "tasks/asr.py"), [args + ["--output-dir", str(tmp_path / f"machine{r}")]
                                                 for r in (0, 1)], HANG_GUARD_S)
    assert [rc for rc, _ in done] == [0, 0], done[0][1][-3000:] + done[1][1][-3000:]
    assert not (tmp_path / "machine1").exists()
    assert "".join(log for _, log in done).count("wrote 8 predictions") == 1
    assert_same(json.loads((tmp_path / "machine0" / "all_results.json").read_text()), one)
    assert one["test_loss"] > 0
