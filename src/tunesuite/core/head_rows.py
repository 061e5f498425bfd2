"""A finished classifier meets new data: its output rows follow the class names, and new classes get new rows."""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..errors import TunesuiteError
from ..registry import Task

log = logging.getLogger("tunesuite")
LABEL_KEYS = ("id2label", "label2id", "num_labels")  # model kwargs that size and name the head


def class_names(id2label: dict | None) -> list[str] | None:
    """Class names in id order; None for unnamed (LABEL_0, ...) or missing label maps."""
    if not id2label:
        return None
    names = [str(id2label[i]) for i in sorted(id2label, key=int)]
    return None if names[0] == "LABEL_0" else names


def _output_layers(model: nn.Module, task: Task, size: int) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, layer) of each output Linear with `size` rows in a head module; peft's wrappers (its
    trained copy and the original) are found under their dotted names too."""
    modules = dict(model.named_modules())
    found = []
    for name, module in modules.items():
        dotted = f".{name}."
        if isinstance(module, nn.Linear) and module.out_features == size and any(
                f".{head}." in dotted for head in task.model.head_modules):
            parent, _, attr = name.rpartition(".")
            found.append((modules[parent], attr, module))
    return found


def _regrown(layer: nn.Linear, rows: list[int | None], std: float | None) -> nn.Linear:
    """A copy of `layer` with row i taken from old row rows[i]; rows without one are freshly initialised."""
    grown = nn.Linear(layer.in_features, len(rows), bias=layer.bias is not None, device=layer.weight.device,
                      dtype=layer.weight.dtype)
    with torch.no_grad():
        if std is not None:  # as transformers initialises a new classifier
            grown.weight.normal_(0.0, std)
            if grown.bias is not None:
                grown.bias.zero_()
        for new, old in enumerate(rows):
            if old is not None:
                grown.weight[new] = layer.weight[old]
                if grown.bias is not None:
                    grown.bias[new] = layer.bias[old]
    grown.requires_grad_(layer.weight.requires_grad)
    return grown


def follow_names(model: nn.Module, task: Task, where: str, old: list[str], new: list[str]) -> None:
    """Reorder (by name) and grow the head trained on classes `old` for the data's classes `new`, in place.

    Every old class must still be there: a run does not forget classes silently."""
    lost = [name for name in old if name not in new]
    if lost:
        raise TunesuiteError(f"{where} was trained on {len(old)} classes; the new data lacks "
                             f"{', '.join(repr(n) for n in lost[:5])}: include examples of every class it knows "
                             "(its head keeps them all), or start from its base model")
    if old == new:
        return
    layers = _output_layers(model, task, len(old))
    if not layers:
        raise TunesuiteError(f"{where}: found no output layer with {len(old)} rows in "
                             f"{', '.join(task.model.head_modules)} to grow")
    rows = [old.index(name) if name in old else None for name in new]
    std = getattr(model.config, "initializer_range", None)
    for parent, attr, layer in layers:
        setattr(parent, attr, _regrown(layer, rows, std))
    config = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
    config.id2label, config.label2id = dict(enumerate(new)), {name: i for i, name in enumerate(new)}
    for module in model.modules():  # classifiers keep their own count for the loss
        if isinstance(getattr(module, "num_labels", None), int):
            module.num_labels = len(new)
    added = [name for name in new if name not in old]
    if added:
        log.info("head grown from %d to %d classes: new rows for %s", len(old), len(new),
                 ", ".join(repr(n) for n in added))
    else:
        log.info("head rows reordered by class name to the data's order (%s)", ", ".join(new))
