"""`--mode auto`: the mode, learning rate and epochs from the data size, the number of classes, the model size and
an optional --time-budget. The rule is the table below, first match wins; README "Which mode?" has the evidence.

compare uses the same learning rates and epochs as every mode's sensible defaults.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesuite import data, registry
from tunesuite.errors import TunesuiteError

log = logging.getLogger("tunesuite")
SMALL_MODEL = 10_000_000  # parameters: below this, every weight trains cheaply (the demos' own small models)
FEW_PER_CLASS = 10  # training examples per class: below this, only the head learns
TARGET_STEPS = 300  # optimizer steps a run should get: more epochs on small data
EPOCHS = (2, 30)  # at least, at most
# mode -> (learning rate on a small model, on a large one): the demos' settings (README "Which mode?")
LEARNING_RATES = {"full": (1e-3, 5e-5), "frozen": (2e-2, 2e-3), "bitfit": (1e-2, 1e-3), "lora": (1e-2, 2e-3),
                  "prompt": (3e-2, 1e-2)}


@dataclass(frozen=True)
class Facts:
    examples: int  # training rows
    classes: int | None  # None: not a classification task (or no label column)
    params: int  # the model's parameters

    def describe(self) -> str:
        classes = f" in {self.classes} classes" if self.classes else ""
        size = f"{self.params / 1e6:.1f}M" if self.params >= 1e6 else f"{self.params / 1e3:.0f}k"
        return f"{self.examples:,} training examples{classes}, a {size}-parameter model"


@dataclass(frozen=True)
class Rule:
    test: Callable[[Facts], bool]
    mode: str
    why: str


RULES = [
    Rule(lambda f: bool(f.classes) and f.examples / f.classes < FEW_PER_CLASS, "frozen",
         f"under {FEW_PER_CLASS} examples per class are too few to move the backbone: the head alone"),
    Rule(lambda f: f.classes is None and f.params < SMALL_MODEL, "frozen-then-full",
         "a small model with a sequence output: the head first, then everything won on the speech data"),
    Rule(lambda f: f.params < SMALL_MODEL, "full",
         "a small model trains every weight cheaply, and full won on the image data"),
    Rule(lambda f: True, "lora", "a large pretrained model: LoRA won on the text demo and keeps the backbone intact"),
]
# Recipes: a name -> the mode it runs (its flags: recipe_flags)
RECIPES = {"frozen-then-full": "frozen"}


def settings(name: str, facts: Facts, values: dict[str, Any]) -> dict[str, Any]:
    """A mode's or recipe's own flags for these facts: mode, learning rate, epochs (and the recipe's)."""
    mode = RECIPES.get(name, name)
    batch = values.get("per_device_train_batch_size", 8)
    own: dict[str, Any] = {"mode": mode, "learning_rate": learning_rate(mode, facts.params),
                           "num_train_epochs": epochs(facts.examples, batch)}
    if name in RECIPES:  # freeze, then unfreeze: the head alone for a third of the epochs, then all at full's rate
        total = max(values.get("num_train_epochs", own["num_train_epochs"]), 2)
        own.update(num_train_epochs=total, unfreeze_after_epochs=max(round(total / 3), 1),
                   unfreeze_learning_rate=learning_rate("full", facts.params))
    return own


def learning_rate(mode: str, params: int) -> float:
    """The learning rate a mode gets on a model of `params` parameters (the registry's default if not tabled)."""
    if mode not in LEARNING_RATES:
        return registry.modes()[mode].learning_rate
    return LEARNING_RATES[mode][params >= SMALL_MODEL]


def epochs(examples: int, batch_size: int) -> int:
    """Enough epochs for about TARGET_STEPS steps, within EPOCHS."""
    steps_per_epoch = max(math.ceil(examples / max(batch_size, 1)), 1)
    return min(max(math.ceil(TARGET_STEPS / steps_per_epoch), EPOCHS[0]), EPOCHS[1])


def facts(task: registry.Task, values: dict[str, Any]) -> Facts:
    """Data size, classes and model size of the run that `values` (typed flags) describe, without loading weights."""
    raw = data.load_raw(values["dataset"], values.get("dataset_config"), values.get("cache_dir"))
    split = raw[values.get("train_split", "train")] if values.get("train_split", "train") in raw else \
        next(iter(raw.values()))
    examples = min(len(split), values.get("max_train_samples") or len(split))
    return Facts(examples, _classes(split, values.get("label_column", "label")), count_params(values["model"]))


def _classes(split: Any, column: str) -> int | None:
    if column not in split.column_names:
        return None
    names = getattr(split.features[column], "names", None)
    if names:
        return len(names)
    values = split[column]
    if values and isinstance(values[0], (list, float)):  # multi-label or regression: no class count
        return None
    return len(set(values))


def count_params(model: str) -> int:
    """The backbone's parameters, counted on the meta device (nothing is allocated or read but the config)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model)
    with torch.device("meta"):
        backbone = AutoModel.from_config(config)
    return sum(p.numel() for p in backbone.parameters())


def choose(task: registry.Task, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with mode auto replaced by the rule's choice (and its learning rate and epochs, unless set)."""
    if not values.get("model") or not values.get("dataset"):
        raise TunesuiteError("--mode auto needs --model and --dataset (it chooses from their sizes)")
    found = facts(task, values)
    rule = next(r for r in RULES if r.test(found))
    own = settings(rule.mode, found, values)
    if "max_steps" in values:
        own.pop("num_train_epochs")
    chosen = {**own, **{k: v for k, v in values.items() if k != "mode"}}
    budget = ""
    if values.get("time_budget"):
        chosen, budget = fit_budget(task, chosen)
    line = (f"mode {rule.mode}, learning rate {chosen['learning_rate']:g}, {chosen.get('num_train_epochs')} "
            f"epochs: {found.describe()}; {rule.why}{budget}")
    log.info("auto: %s", line)
    return {**chosen, "auto_choice": line}


def fit_budget(task: registry.Task, chosen: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Fewer epochs when the estimate (a few timed steps) says the run overruns --time-budget."""
    from tunesuite.choose.estimate import measure_values
    from tunesuite.train.timing import parse_duration

    budget = parse_duration(chosen["time_budget"])
    measured = measure_values(task, chosen)
    fit = int((budget - measured["start_s"]) // max(measured["estimate_epoch_s"], 1e-9))
    planned = chosen.get("num_train_epochs")
    if planned is None or fit >= planned:
        return chosen, f"; fits the {budget:.0f} s budget (~{measured['estimate_train_s']:.0f} s)"
    epochs_now = max(fit, 1)
    return ({**chosen, "num_train_epochs": epochs_now},
            f"; {epochs_now} epochs fit the {budget:.0f} s budget (~{measured['estimate_epoch_s']:.0f} s per epoch)")


def resolve_auto(task: registry.Task, values: dict[str, Any]) -> dict[str, Any]:
    """What parsing hands config.resolve: the auto choice made, or `values` as they are."""
    return choose(task, values) if values.get("mode") == "auto" else values
