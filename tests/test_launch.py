"""Accelerate: shipped launch configs load; real two-process DDP on the CPU (gloo) trains and exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from conftest import HANG_GUARD_S

import tunesuite

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {"accelerate_config.yaml": ("NO", "no"), "launch_configs/multi_gpu.yaml": ("MULTI_GPU", "no"),
            "launch_configs/multi_gpu_bf16.yaml": ("MULTI_GPU", "bf16"),
            "launch_configs/single_gpu_fp16.yaml": ("NO", "fp16"),
            "launch_configs/deepspeed_zero2.yaml": ("DEEPSPEED", "bf16"),
            "launch_configs/fsdp.yaml": ("FSDP", "bf16"), "launch_configs/cpu_ddp.yaml": ("MULTI_GPU", "no")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launch_configs_load_with_accelerate(name):
    config = load_config_from_file(str(ROOT / name))
    assert (config.distributed_type.value, str(config.mixed_precision)) == EXPECTED[name]
    if config.distributed_type.value == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 2


def test_two_process_ddp_trains_and_matches_single_process_eval(pretrained_bert, topic_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
           str(ROOT / "launch_configs/cpu_ddp.yaml"), str(ROOT / "tasks/text_classification.py"),
           "--model", str(pretrained_bert), "--dataset", str(topic_data),
           "--mode", "lora", "--output-dir", str(out), "--num-train-epochs", "2", "--learning-rate", "1e-2",
           "--per-device-train-batch-size", "8", "--disable-tqdm", "true", "--do-predict"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("wrote 30 predictions") == 1  # only rank 0 writes
    results = json.loads((out / "all_results.json").read_text())
    steps = json.loads(next(out.glob("checkpoint-*/trainer_state.json")).read_text())["global_step"]
    assert steps in (15, 30)  # 240 rows / (8 x 2 processes) = 15 steps an epoch: both ranks took a share
    # evaluation gathered over both ranks equals a single-process evaluation of the saved model
    single = tunesuite.evaluate(out)
    assert single["eval_accuracy"] == results["eval_accuracy"]
    assert single["test_accuracy"] == results["test_accuracy"]
    assert results["eval_accuracy"] >= 0.9


@pytest.mark.parametrize("mode", ["lora", "prompt"])
def test_gradient_checkpointing_still_trains_adapters_and_prompts(pretrained_bert, topic_data, tmp_path, mode):
    from safetensors.torch import load_file

    def run(name: str, learning_rate: float) -> dict:
        tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode=mode,
                           output_dir=str(tmp_path / name), max_steps=3, learning_rate=learning_rate, seed=5,
                           gradient_checkpointing=True, disable_tqdm=True, save_strategy="no")
        return load_file(tmp_path / name / "adapter_model.safetensors")

    trained, untouched = run("trained", 1e-2), run("untouched", 0.0)  # same seed: same starting weights
    name = "lora_B" if mode == "lora" else "prompt_embeddings"
    keys = [k for k in trained if name in k]
    assert keys and all(not torch.equal(trained[k], untouched[k]) for k in keys)  # gradients got through
