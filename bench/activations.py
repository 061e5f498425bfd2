"""What a training step keeps for backward: the tensors saved in the autograd graph after one forward pass,
grouped by the operation that saved them, for the model each mode trains (built as a run builds it).

    python bench/activations.py                                  # MiniLM, full / lora / prompt, batch 16 x 128
    python bench/activations.py --modes lora --batch 32 --length 64

Each storage is counted once; saved weights are listed apart (they exist anyway). On a CPU, PyTorch's dropout
saves its mask as float32 (the "Mul" rows) and attention with dropout saves its probabilities.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

MB = 2**20


def saved_tensors(loss: torch.Tensor, weights: set[int]) -> tuple[Counter, int]:
    """Bytes saved for backward per "<op>.<saved name>", and the bytes of saved parameters (by storage)."""
    by_op: Counter = Counter()
    seen: set[int] = set()
    weight_bytes = 0
    stack, visited = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attr in dir(node):
            if not attr.startswith("_saved_"):
                continue
            try:
                value = getattr(node, attr)
            except RuntimeError:  # already freed or not a tensor slot
                continue
            for tensor in value if isinstance(value, (tuple, list)) else [value]:
                if not isinstance(tensor, torch.Tensor):
                    continue
                storage = tensor.untyped_storage()
                if storage.data_ptr() in seen:
                    continue
                seen.add(storage.data_ptr())
                if storage.data_ptr() in weights:
                    weight_bytes += storage.nbytes()
                else:
                    by_op[f"{node.name().removesuffix('Backward0')}.{attr.removeprefix('_saved_')}"] += storage.nbytes()
        stack += [next_node for next_node, _ in node.next_functions]
    return by_op, weight_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["full", "lora", "prompt"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--work", type=Path, default=HERE.parent / "runs" / "bench")
    args = parser.parse_args()

    import core
    import suite
    from setups import prepare

    core.setup_process(1)  # one thread, no progress bars or loading reports
    model_dir, data_dir = prepare("minilm", args.work.resolve(), "small")
    for mode in args.modes:
        trainer = suite.build("text-classification", suite.options(model_dir, data_dir, mode, args.work / "out", 1))[0]
        model = trainer.model.train()
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        torch.manual_seed(0)
        ids = torch.randint(1000, 20000, (args.batch, args.length))
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(args.batch).long()).loss
        by_op, weight_bytes = saved_tensors(loss, weights)
        print(f"\n{mode}: {sum(by_op.values()) / MB:.0f} MB saved for backward (+ {weight_bytes / MB:.0f} MB of "
              f"weights), batch {args.batch} x {args.length} tokens")
        for name, size in by_op.most_common(8):
            print(f"  {size / MB:8.1f} MB  {name}")


if __name__ == "__main__":
    main()
