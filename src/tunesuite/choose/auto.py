"""`--mode auto`: the mode, learning rate and epochs from the data size, the number of classes, the model size and
an optional --time-budget. The rules are the registry's: each mode or recipe registers when auto picks it
(`AutoRule`, tried in order, first match wins) and its own learning rate; docs/choosing.md has the evidence.

compare uses the same settings for each of its candidates (`settings`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesuite import data, registry
from tunesuite.config.resolve import count_params
from tunesuite.errors import TunesuiteError

log = logging.getLogger("tunesuite")
TARGET_STEPS = 300  # optimizer steps a run should get: more epochs on small data
EPOCHS = (2, 30)  # at least, at most


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
    mode: str  # the mode or recipe it picks
    test: Callable[[registry.RunFacts], bool]
    why: str


def rules() -> list[Rule]:
    """The registered modes' and recipes' auto rules, in the order they are tried."""
    entries = [*registry.in_registration_order(registry.modes()), *registry.in_registration_order(registry.recipes())]
    ordered = sorted((e for e in entries if e.auto is not None), key=lambda e: e.auto.order)
    return [Rule(e.name, e.auto.test, e.auto.why) for e in ordered]


def settings(name: str, facts: Facts, values: dict[str, Any]) -> dict[str, Any]:
    """A mode's or recipe's own flags for these facts: mode, learning rate, epochs (and the recipe's)."""
    recipe = registry.recipes().get(name)
    mode = registry.modes()[recipe.mode if recipe else name]
    batch = values.get("per_device_train_batch_size", 8)
    own: dict[str, Any] = {"mode": mode.name, "learning_rate": mode.learning_rate_for(facts.params),
                           "num_train_epochs": epochs(facts.examples, batch)}
    if recipe:
        own.update(recipe.flags(values.get("num_train_epochs", own["num_train_epochs"]), facts.params))
    return own


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


def choose(task: registry.Task, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with mode auto replaced by the rule's choice (and its learning rate and epochs, unless set)."""
    if not values.get("model") or not values.get("dataset"):
        raise TunesuiteError("--mode auto needs --model and --dataset (it chooses from their sizes)")
    found = facts(task, values)
    rule = next(r for r in rules() if r.test(found))
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
