"""Loading the pretrained model for a run: a head sized for the data, and the names of the modules that must train."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from tunesuite.config.resolve import RunConfig
from tunesuite.errors import TunesuiteError
from tunesuite.models.families import head_modules
from tunesuite.registry import Task

log = logging.getLogger("tunesuite")


def new_modules(missing_keys: list[str]) -> list[str]:
    """Module names whose weights the checkpoint lacked (newly initialised, so they must train)."""
    return sorted({key.rsplit(".", 1)[0] for key in missing_keys})


def reset_relabelled_head(model: torch.nn.Module, task: Task, cfg: RunConfig, id2label: dict | None) -> list[str]:
    """A checkpoint trained on other named classes, as many as ours (so no size mismatch), gets a fresh output
    layer: its rows belong to the old classes. Returns the re-initialised module names."""
    from transformers import AutoConfig

    old = AutoConfig.from_pretrained(cfg.model.model, revision=cfg.model.revision, cache_dir=cfg.model.cache_dir)
    old_names = [str(old.id2label[i]) for i in sorted(old.id2label)]
    new_names = [str(id2label[i]) for i in sorted(id2label)] if id2label else old_names
    if len(old_names) != len(new_names) or old_names == new_names or old_names[0] == "LABEL_0":
        return []  # other sizes were re-initialised on loading; same classes or unnamed ones keep their head
    modules = dict(model.named_modules())
    reset = [name for name, m in modules.items() if isinstance(m, torch.nn.Linear) and m.out_features == len(new_names)
             and any(name == h or name.startswith(h + ".") for h in task.model.head_modules)]
    for name in reset:
        modules[name].reset_parameters()
    log.info("checkpoint classes (%s) differ from the data's (%s): re-initialised %s", _short(old_names),
             _short(new_names), ", ".join(reset))
    return reset


def _short(names: list[str], keep: int = 4) -> str:
    """'a, b, c, d, ... (7 classes)' for long lists; the whole list when short."""
    if len(names) <= keep + 1:
        return ", ".join(names)
    return ", ".join(names[:keep]) + f", ... ({len(names)} classes)"


def load_model(task: Task, cfg: RunConfig, model_kwargs: dict[str, Any]) -> tuple[torch.nn.Module, list[str]]:
    """The pretrained model with a head for this data, and the module names that must train."""
    model, fresh = pretrained(task, cfg.model.model, model_kwargs, revision=cfg.model.revision,
                              cache_dir=cfg.model.cache_dir)
    fresh = sorted({*fresh, *reset_relabelled_head(model, task, cfg, model_kwargs.get("id2label"))})
    return model, head_names(model, task, fresh)


def pretrained(task: Task, path: str, model_kwargs: dict[str, Any], **options: Any) -> tuple[torch.nn.Module,
                                                                                          list[str]]:
    """`path` loaded with the task's AutoModel (other-sized weights re-initialised), and the new module names."""
    try:
        model, info = task.model.auto_model.from_pretrained(path, ignore_mismatched_sizes=True,
                                                            output_loading_info=True, **options, **model_kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise TunesuiteError(f"could not load model {path!r}: {first}") from None
    except SafetensorError as e:  # a damaged or truncated weights file
        raise TunesuiteError(f"could not read the weights of model {path!r}: {_bad_weights_file(path)} is damaged "
                             f"or truncated ({e}); download or save the model again") from None
    return model, new_modules([*info.get("missing_keys", ()), *(k for k, *_ in info.get("mismatched_keys", ()))])


def head_names(model: torch.nn.Module, task: Task, fresh: list[str]) -> list[str]:
    """The modules that train in every mode: the task's head modules the model has, plus new ones (logged)."""
    present = {name for name, _ in model.named_modules()}
    head = sorted({h for h in (*task.model.head_modules, *head_modules(model)) if h in present} | set(fresh))
    head = [h for h in head if not any(h.startswith(outer + ".") for outer in head)]  # peft: no nested wrappers
    if fresh:
        log.info("newly initialised (will train in every mode): %s", ", ".join(fresh))
    return head


def position_limit(config: Any, auto_model: Any, pad_id: int | None) -> tuple[int, str] | None:
    """The longest input in tokens the model's learned position embeddings can number, and a note of where it
    comes from; None when the config sets no such limit (relative or rotary positions).

    Families that number positions after the padding id, fairseq-style (RoBERTa, XLM-R, CamemBERT, ...: their
    modeling code has `create_position_ids_from_input_ids`), lose pad_id + 1 of the table: RoBERTa's 514 hold 512.
    """
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    note = f"max_position_embeddings {positions}"
    if _numbers_after_padding(config, auto_model):
        offset = (pad_id if pad_id is not None else getattr(config, "pad_token_id", None) or 0) + 1
        return positions - offset, (f"{note} less pad_token_id + 1 = {offset}: {config.model_type} numbers "
                                    "positions after the padding id")
    return positions, note


def _numbers_after_padding(config: Any, auto_model: Any) -> bool:
    """Whether the model class's module numbers positions from the padding id (see position_limit)."""
    try:
        model_class = auto_model._model_mapping[type(config)]
    except (KeyError, AttributeError, ValueError):
        return False
    for cls in model_class if isinstance(model_class, tuple) else (model_class,):
        module = sys.modules.get(cls.__module__)
        if module is not None and any(hasattr(value, "create_position_ids_from_input_ids")
                                      for value in vars(module).values() if isinstance(value, type)):
            return True
    return False


def _bad_weights_file(model: str) -> str:
    """The first unreadable *.safetensors file of a local model folder (else a generic name)."""
    from safetensors import safe_open

    for file in sorted(Path(model).glob("*.safetensors")) if Path(model).is_dir() else ():
        try:
            with safe_open(str(file), "pt"):
                pass
        except (SafetensorError, OSError):
            return str(file)
    return "its weights file"


def dedupe_modules_to_save(model: torch.nn.Module) -> None:
    """peft appends its own head names (classifier, score) to ours: save each module once, and only those
    the model has, so adapter_config.json lists exactly what trains."""
    names = [name for name, _ in model.named_modules()]
    for config in getattr(model, "peft_config", {}).values():
        if getattr(config, "modules_to_save", None):
            wanted = dict.fromkeys(config.modules_to_save)  # ordered, once each
            config.modules_to_save = [m for m in wanted if any(n.endswith(m) for n in names)]  # as peft matches
