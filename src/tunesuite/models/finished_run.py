"""A finished tunesuite run as a model: opened for prediction, or continued by a new run (`--model OUT`).

A run's folder holds one of: a plain checkpoint (full, frozen, bitfit), a peft adapter (adapter_config.json
beside the base's config), or a checkpoint with our own prompts (`config.tunesuite_prompt`, see own_prompts.py).
Continuing in the run's own mode keeps training what it trained (adapter, prompts); another mode starts from
the run's weights, a mergeable adapter merged into its base first.

A finished classifier continued on new data: its output rows follow the class names, new classes get new rows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunesuite import logs, registry
from tunesuite.config.resolve import RunConfig
from tunesuite.errors import TunesuiteError
from tunesuite.models.run_folder import ADAPTER, RunFolder, class_names
from tunesuite.registry import Task

log = logging.getLogger("tunesuite")
LABEL_KEYS = ("id2label", "label2id", "num_labels")  # model kwargs that size and name the head


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


CONTINUED = "_tunesuite_continued"  # set on a model that carries its mode's trained adapter or prompts


def check_task(task_name: str, path: str) -> None:
    """`--model OUT` of a finished run: a run of this task (it continues), or a plain checkpoint of another task
    whose architecture this task's model class takes (its encoder gets a new head, e.g. a CTC speech run for
    audio classification)."""
    run = RunFolder.find(path)
    task = registry.find_task(task_name)
    if run is None or task is None or registry.find_task(run.task_name) is task:
        return
    if not _loads_as(task, path):
        raise TunesuiteError(f"--model {path} is a {run.task_name} run; the {task_name} task needs a pretrained "
                             f"checkpoint or a finished {task_name} run")
    if not run.plain:
        raise TunesuiteError(f"--model {path} is a {run.task_name} {run.mode} run: its adapter or prompts "
                             f"belong to that task; export a plain checkpoint (tunesuite export {path} --merge DEST, "
                             "for LoRA) and start from DEST, or start from its base model")


def _loads_as(task: registry.Task, path: str) -> bool:
    """Whether the task's AutoModel class has a model for the checkpoint's architecture."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    return type(config) in task.model.auto_model._model_mapping


def open_run(task: registry.Task, out: str | Path, trainable: bool = False,
             config_kwargs: dict[str, Any] | None = None) -> Any:
    """The model a finished run saved, exactly: base + peft adapter, or the checkpoint with its own_prompts."""
    from transformers import AutoConfig

    from tunesuite.models import families
    from tunesuite.modes import label_scorer, own_prompts

    out = Path(out)
    run = RunFolder(out)
    if not run.has_adapter:
        with own_prompts.prompt_weights_expected(task.model.auto_model, out), \
                label_scorer.scorer_weights_expected(task.model.auto_model, out):
            model = task.model.auto_model.from_pretrained(out, **(config_kwargs or {}))
        return label_scorer.restore(own_prompts.restore(model, out), out)
    from peft import PeftConfig, PeftModel, get_peft_model, load_peft_weights, set_peft_model_state_dict

    base_path = run.read_json(ADAPTER)["base_model_name_or_path"]
    # the base's own head may have another size; the trained head comes with the adapter (modules_to_save)
    try:
        with logs.transformers_errors_only():  # a MISSING or resized head: the adapter restores it
            base = task.model.auto_model.from_pretrained(
                base_path, config=AutoConfig.from_pretrained(out, **(config_kwargs or {})),
                ignore_mismatched_sizes=True)
    except (OSError, ValueError) as e:
        raise TunesuiteError(f"{out}: cannot load the base model of its adapter, {base_path!r} "
                             f"({str(e).strip().splitlines()[0]}); put it back or fix adapter_config.json") from None
    config = PeftConfig.from_pretrained(out)
    if not (trainable and config.is_prompt_learning):
        model = PeftModel.from_pretrained(base, out, is_trainable=trainable)
    else:  # peft loads prompt-learning adapters frozen only: build the same prompt, trainable, and load its weights
        config.inference_mode = False
        model = get_peft_model(base, config)
        set_peft_model_state_dict(model, load_peft_weights(str(out)))  # as PeftModel.from_pretrained loads them
    families.expose_conv_geometry(model)
    return model


def load_model(task: registry.Task, cfg: RunConfig, model_kwargs: dict[str, Any]) -> tuple[Any, list[str]]:
    """The model a run starts from, and the module names that must train: a finished run continues (below);
    anything else is a pretrained checkpoint (models/pretrained.py)."""
    from tunesuite.models import pretrained

    run = RunFolder.find(cfg.model.model)
    if run is None:
        return pretrained.load_model(task, cfg, model_kwargs)
    if registry.find_task(run.task_name) is not task:  # check_task let only a plain checkpoint through
        log.info("starting from the weights of the finished %s run %s, with a new %s head", run.task_name,
                 cfg.model.model, task.name)
        return pretrained.load_model(task, cfg, model_kwargs)
    if _transfer(run, model_kwargs):
        log.info("the data's classes do not include all of %s's: transfer to a new label set, with a new head",
                 cfg.model.model)
        return pretrained.load_model(task, cfg, model_kwargs)
    return _continue(task, cfg, run, model_kwargs)


def _transfer(run: RunFolder, model_kwargs: dict[str, Any]) -> bool:
    """A plain run (no adapter, no prompts) fine-tuned on classes that leave some of its own out: the usual
    transfer to a new label set (its head starts fresh), not a continuation that would forget classes."""
    old, new = run.labels, class_names(model_kwargs.get("id2label"))
    return run.plain and old is not None and new is not None and not set(old) <= set(new)


def _continue(task: registry.Task, cfg: RunConfig, run: RunFolder, model_kwargs: dict[str, Any]
              ) -> tuple[Any, list[str]]:
    from transformers import AutoConfig

    from tunesuite.models import pretrained
    from tunesuite.modes import own_prompts

    out, mode, theirs = Path(cfg.model.model), cfg.run.mode, run.mode or registry.DEFAULT_MODE
    same, adapter = theirs == mode, run.has_adapter
    config = AutoConfig.from_pretrained(out)
    old, new = run.labels, class_names(model_kwargs.get("id2label"))
    by_name = old is not None and new is not None  # the head's rows follow class names (head_rows), not sizes
    kwargs = {k: v for k, v in model_kwargs.items() if not (by_name and k in LABEL_KEYS)}
    own = not run.plain  # trained parts beside the weights: an adapter or our own prompts
    fresh: list[str] = []
    if own and not same and not (adapter and getattr(registry.modes().get(theirs), "mergeable", False)):
        raise TunesuiteError(f"--model {out} is a {theirs} run: its {'adapter' if adapter else 'prompts'} cannot "
                             f"be merged into the model, so it continues only with --mode {theirs}; for "
                             f"--mode {mode} start from its base model ({run.config.get('model')})")
    if adapter:
        if "vocab_size" in kwargs and kwargs["vocab_size"] != getattr(config, "vocab_size", None):
            raise TunesuiteError(f"--model {out}: the new data needs a vocabulary of {kwargs['vocab_size']} "
                                 f"symbols, its {theirs} adapter was trained for {config.vocab_size}; grow the "
                                 "vocabulary from a full, frozen or bitfit run")
        model = open_run(task, out, trainable=same, config_kwargs=kwargs)
        if not same:
            model = model.merge_and_unload()
            log.info("merged the %s adapter of %s into its base before --mode %s", theirs, out, mode)
    else:
        with own_prompts.prompt_weights_expected(task.model.auto_model, out):
            model, fresh = pretrained.pretrained(task, str(out), kwargs)
        model = own_prompts.restore(model, out)
    if by_name:
        follow_names(model, task, f"--model {out}", old, new)
    setattr(model, CONTINUED, same and own)
    log.info("continuing the finished %s run %s with --mode %s%s", theirs, out, mode,
             f" (its own {'adapter' if adapter else 'prompts'} keep training, with their saved settings)"
             if same and own else "")
    return model, pretrained.head_names(model, task, fresh)
