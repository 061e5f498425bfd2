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
            "launch_configs/fsdp.yaml": ("FSDP", "bf16"), "launch_configs/cpu_ddp.yaml": ("MULTI_GPU", "no"),
            "launch_configs/deepspeed_zero3.yaml": ("DEEPSPEED", "bf16"),
            "launch_configs/multi_node.yaml": ("MULTI_GPU", "bf16")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launch_configs_load_with_accelerate(name):
    config = load_config_from_file(str(ROOT / name))
    assert (config.distributed_type.value, str(config.mixed_precision)) == EXPECTED[name]
    if config.distributed_type.value == "DEEPSPEED":  # the stage its name says
        assert f"zero{config.deepspeed_config['zero_stage']}" in name
    if "multi_node" in name:
        assert config.num_machines == 2 and config.main_process_ip and config.num_processes % 2 == 0


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


def test_trainer_arguments_use_non_reentrant_checkpointing_for_frozen_input_modes(tiny_bert, topic_data, tmp_path):
    """Every registered mode whose first layer's inputs carry no grad gets use_reentrant=False (bitfit too), full
    does not; the Trainer gets a copy and the parsed cfg.training stays as parsed."""
    import copy

    from tunesuite.cli import parse_args
    from tunesuite.registry import modes
    from tunesuite.train.recipe import trainer_arguments

    assert modes()["bitfit"].frozen_inputs and not modes()["full"].frozen_inputs
    for name, mode in modes().items():
        cfg = parse_args(tunesuite.TEXT_CLASSIFICATION, [
            "--model", str(tiny_bert), "--dataset", str(topic_data), "--mode", name, "--output-dir", str(tmp_path),
            "--gradient-checkpointing", "true", "--push-to-hub", "true", "--hub-model-id", "me/x"])
        before = copy.deepcopy(cfg.training.to_dict())
        args = trainer_arguments(cfg)
        assert cfg.training.to_dict() == before, name
        assert args is not cfg.training and args.push_to_hub is False and cfg.training.push_to_hub is True
        assert args.gradient_checkpointing and (args.gradient_checkpointing_kwargs or {}).get(
            "use_reentrant", True) is (not mode.frozen_inputs), name


def test_a_run_leaves_its_parsed_config_unchanged(tiny_bert, topic_data, tmp_path, monkeypatch):
    """What a run derives travels beside the config: after the run every field is as parsed. A local --model
    given relative is absolute from the parse on, so the adapter finds its base from anywhere."""
    import copy
    import dataclasses

    from tunesuite.cli import parse_args
    from tunesuite.train.recipe import finetune_config

    monkeypatch.chdir(tiny_bert.parent)
    task = tunesuite.TEXT_CLASSIFICATION
    cfg = parse_args(task, ["--model", f"./{tiny_bert.name}", "--dataset", str(topic_data), "--mode", "lora",
                            "--output-dir", str(tmp_path / "run"), "--max-steps", "1", "--save-strategy", "no",
                            "--disable-tqdm", "true"])
    assert cfg.model.model == str(tiny_bert.resolve())
    before = copy.deepcopy(dataclasses.asdict(cfg))
    finetune_config(task, cfg)
    assert dataclasses.asdict(cfg) == before
    adapter = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_bert.resolve())
