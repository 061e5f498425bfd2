"""torch FSDP2 (`fully_shard`) over gloo on the CPU, with the plugin and wrap policy Accelerate derives from
launch_configs/fsdp.yaml, then AdamW steps by hand: on a CPU, Accelerate never enables FSDP (accelerate/state.py),
so its Trainer path cannot run here. Also records what Accelerate's own whole wrap (`fsdp2_prepare_model`) raises.

    python -m torch.distributed.run --nproc-per-node 2 tests/fsdp_helper.py MODEL DATA OUT

Each rank writes OUT/rank{R}.json (losses, FSDP units, local and total numel) and OUT/rank{R}.pt (the full state
dict gathered at the end). The test imports `build_model`, `global_batches` and `train` for the one-process run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
FSDP_YAML = ROOT / "launch_configs/fsdp.yaml"
STEPS, GLOBAL_BATCH, LEARNING_RATE = 4, 8, 1e-2


def build_model(model: str, dataset: str, out: str) -> tuple[torch.nn.Module, Any, Any]:
    """The model a tunesuite LoRA text run trains (tunesuite's own build: data, model, mode), its training rows
    and its collator."""
    import tunesuite
    from tunesuite.cli import parse_args
    from tunesuite.train.recipe import build

    cfg = parse_args(tunesuite.TEXT_CLASSIFICATION, [
        "--model", model, "--dataset", dataset, "--output-dir", out, "--mode", "lora", "--lora-dropout", "0",
        "--seed", "3", "--disable-tqdm", "true", "--save-strategy", "no", "--report-to", "none"])
    trainer, prepared = build(tunesuite.TEXT_CLASSIFICATION, cfg)
    return trainer.model, prepared.train, trainer.data_collator


def global_batches(rows: Any, collator: Any, rank: int = 0, world: int = 1) -> list[dict[str, torch.Tensor]]:
    """STEPS global batches of GLOBAL_BATCH rows in order; this rank's contiguous share of each."""
    per_rank = GLOBAL_BATCH // world
    columns = [c for c in rows.column_names if c in ("input_ids", "attention_mask", "token_type_ids", "labels")]
    starts = [step * GLOBAL_BATCH + rank * per_rank for step in range(STEPS)]
    return [collator([{c: rows[i][c] for c in columns} for i in range(start, start + per_rank)]) for start in starts]


def mean_over_ranks(value: torch.Tensor) -> float:
    """`value` averaged over the processes (itself in one process)."""
    if torch.distributed.is_initialized():
        value = value.detach().clone()
        torch.distributed.all_reduce(value)
        value /= torch.distributed.get_world_size()
    return value.item()


def train(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> list[float]:
    """One AdamW step per batch. Returns each step's loss (the global batch's mean, before its update), then the
    first batch's loss after the last step (the same batch again: it must have fallen)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    losses = []
    for batch in batches:
        loss = model(**batch).loss
        losses.append(mean_over_ranks(loss))
        loss.backward()  # FSDP2 reduce-scatters the gradients, averaged over ranks: the global batch's gradient
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        losses.append(mean_over_ranks(model(**batches[0]).loss))
    return losses


def launch_args(config_file: Path, *flags: str) -> Any:
    """`accelerate launch --config_file config_file *flags`'s arguments after the launcher merged the file in."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(
        ["--config_file", str(config_file), *flags, "unused.py"]))
    if args.use_deepspeed:  # as launch_command does before it starts the DeepSpeed launcher
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    return args


def fsdp_plugin(config_file: Path, num_processes: int) -> Any:
    """The FullyShardedDataParallelPlugin `accelerate launch --config_file config_file` gives its processes: the
    launcher's FSDP_* variables, read back by the plugin (fp32: --mixed_precision no)."""
    from unittest import mock

    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_args(config_file, "--num_processes", str(num_processes), "--mixed_precision", "no")
    with mock.patch.dict(os.environ, prepare_multi_gpu_env(args)):
        return FullyShardedDataParallelPlugin()


def shard(model: torch.nn.Module, plugin: Any) -> torch.nn.Module:
    """`fully_shard` on each module the plugin's wrap policy matches (Accelerate's own policy function; the
    layer classes come from the model's `_no_split_modules` when the yaml names none), bottom-up, then the root."""
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy, get_module_children_bottom_up
    from torch.distributed.fsdp import fully_shard

    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    for module in get_module_children_bottom_up(model)[:-1]:
        if policy is not None and policy(module):
            fully_shard(module, reshard_after_forward=plugin.reshard_after_forward)
    return fully_shard(model)


def accelerate_wrap_error(model: torch.nn.Module, plugin: Any) -> str | None:
    """What Accelerate's whole FSDP2 wrap (`fsdp2_prepare_model`, on a copy) raises for this model, if anything. It
    reads only these fields of the Accelerator, which cannot be built with FSDP on a CPU."""
    import copy

    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=copy.copy(plugin)), mixed_precision="no",
                                  is_main_process=torch.distributed.get_rank() == 0, device=torch.device("cpu"))
    try:
        fsdp2_prepare_model(accelerator, copy.deepcopy(model))
    except Exception as e:  # reported, not handled
        return f"{type(e).__name__}: {e}"
    return None


def main(model_path: str, dataset: str, out: str) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    torch.distributed.init_process_group("gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model, rows, collator = build_model(model_path, dataset, f"{out}/build-{rank}")
    plugin = fsdp_plugin(FSDP_YAML, world)
    total = sum(p.numel() for p in model.parameters())
    accelerate_error = accelerate_wrap_error(model, plugin)
    model = shard(model, plugin)
    params = list(model.parameters())
    report = {
        "auto_wrap_policy": getattr(plugin.auto_wrap_policy, "func", plugin.auto_wrap_policy).__name__,
        "yaml_layer_classes": plugin.transformer_cls_names_to_wrap,
        "accelerate_wrap_error": accelerate_error,
        "units": {name: type(m).__name__ for name, m in model.named_modules() if isinstance(m, FSDPModule)},
        "all_sharded": all(isinstance(p, DTensor) for p in params),
        "local_numel": sum(p.to_local().numel() for p in params), "total_numel": total,
        "losses": train(model, global_batches(rows, collator, rank, world))}
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    torch.save({k: v.detach().clone() for k, v in full.items()}, f"{out}/rank{rank}.pt")
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
