"""Sharded training on the CPU: the model a tunesuite LoRA run builds, wrapped with torch FSDP2 (`fully_shard`, gloo,
2 processes) per launch_configs/fsdp.yaml's wrap policy as Accelerate reads it, trains AdamW steps like one process
on the same global batch; the DeepSpeed yaml turns into a ZeRO-3 config (DeepSpeed itself is not installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fsdp_helper
import pytest
import torch
from conftest import HANG_GUARD_S
from node_helpers import ROOT, free_port, node_env


@pytest.fixture(scope="module")
def bert_no_dropout(pretrained_bert, tmp_path_factory) -> Path:
    """The pretrained tiny BERT without dropout: each process would draw its own masks."""
    import shutil

    path = tmp_path_factory.mktemp("sharding-bert") / "bert"
    shutil.copytree(pretrained_bert, path)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_fsdp2_over_gloo_shards_the_lora_model_and_trains_like_one_process(bert_no_dropout, topic_data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           str(ROOT / "tests/fsdp_helper.py"), str(bert_no_dropout), str(topic_data), str(tmp_path)]
    proc = subprocess.run(cmd, env=node_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    # the yaml names no layer class: Accelerate takes the model's _no_split_modules (BertEmbeddings, BertLayer)
    assert ranks[0]["auto_wrap_policy"] == "transformer_auto_wrap_policy" and ranks[0]["yaml_layer_classes"] is None
    units = sorted(ranks[0]["units"].values())  # fully_shard renames a module's class FSDP<class>
    assert units == ["FSDPBertEmbeddings", "FSDPBertLayer", "FSDPBertLayer", "FSDPPeftModelForSequenceClassification"]
    # Accelerate's own whole wrap fails on such a model (it shards the word embeddings again inside
    # BertEmbeddings); when this assert fails, Accelerate has fixed it: say so in docs/scale-out.md
    assert ranks[0]["accelerate_wrap_error"].startswith("TypeError: Invariant encountered")

    # each rank holds about half of every parameter, and the halves add up to the model
    assert all(r["all_sharded"] for r in ranks)
    total = ranks[0]["total_numel"]
    assert sum(r["local_numel"] for r in ranks) == total
    assert all(0.45 < r["local_numel"] / total < 0.55 for r in ranks)

    # the same losses as one process on the same global batches, falling on the first batch
    model, rows, collator = fsdp_helper.build_model(str(bert_no_dropout), str(topic_data), str(tmp_path / "one"))
    one_losses = fsdp_helper.train(model, fsdp_helper.global_batches(rows, collator))
    assert ranks[0]["losses"] == ranks[1]["losses"]
    assert ranks[0]["losses"] == pytest.approx(one_losses, rel=1e-4)
    assert one_losses[-1] < one_losses[0] - 0.05

    # the gathered full state dict: equal on both ranks, and that of the one-process run
    one = model.state_dict()
    assert states[0].keys() == states[1].keys() == one.keys()
    lora_b = [k for k in one if "lora_B" in k]  # zeros before training
    assert lora_b and all(states[0][k].abs().sum() > 0 for k in lora_b)
    for key in one:
        assert torch.equal(states[0][key], states[1][key]), key
        assert torch.allclose(states[0][key], one[key], atol=1e-5), key


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_yaml_becomes_the_zero_config_accelerate_hands_deepspeed(stage, monkeypatch):
    """The launcher's ACCELERATE_DEEPSPEED_* variables, read back by DeepSpeedPlugin (what `accelerate launch` runs
    before the Trainer fills in the "auto" batch sizes). DeepSpeed itself is not installed: nothing runs."""
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    _, env = prepare_deepspeed_cmd_env(fsdp_helper.launch_args(ROOT / f"launch_configs/deepspeed_zero{stage}.yaml"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    config = plugin.deepspeed_config
    assert config["zero_optimization"] == {
        "stage": stage, "offload_optimizer": {"device": "none", "nvme_path": None},
        "offload_param": {"device": "none", "nvme_path": None},
        "stage3_gather_16bit_weights_on_model_save": stage == 3}  # ZeRO-3 saves one gathered file
    assert config["gradient_clipping"] == 1.0 and config["gradient_accumulation_steps"] == 1
    assert config["train_micro_batch_size_per_gpu"] == config["train_batch_size"] == "auto"
    assert plugin.zero3_init_flag is (stage == 3)  # ZeRO-3 builds the model sharded
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
