"""The registry keeps each fact once: a name registered twice raises (replace=True on purpose); a mode's learning
rate is the one `--mode X`, `compare` and `--mode auto` use; compare's candidates and auto's rules are the
registered modes' and recipes'; the default mode is one constant; task callables match their Protocols."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest
import yaml

import tunesuite
from tunesuite import registry
from tunesuite.choose import auto
from tunesuite.choose.compare import runs
from tunesuite.config.fields import RunArgs
from tunesuite.config.resolve import count_params
from tunesuite.registry import AutoRule, DuplicateName, Family, Recipe

QUIET = {"disable_tqdm": True, "save_strategy": "no", "max_steps": 1, "per_device_train_batch_size": 16}


def _keep_nothing(model, ctx):
    return model


@pytest.fixture
def cleanup():
    """Names this test registers, taken out again afterwards (with their recorded origin)."""
    added: list[tuple[dict, str]] = []
    yield added
    for table, name in added:
        table.pop(name, None)
        registry._WHERE.pop((id(table), name), None)


def test_a_mode_name_registered_twice_raises_unless_replaced(cleanup):
    cleanup.append((registry.MODES, "twice"))
    tunesuite.register_mode("twice", help="first", learning_rate=1e-3)(_keep_nothing)
    with pytest.raises(DuplicateName, match="mode 'twice' is already registered .*replace=True"):
        tunesuite.register_mode("twice", help="second", learning_rate=1e-3)(_keep_nothing)
    assert registry.modes()["twice"].help == "first"
    tunesuite.register_mode("twice", help="second", learning_rate=2e-3, replace=True)(_keep_nothing)
    assert registry.modes()["twice"].help == "second" and registry.modes()["twice"].learning_rate == 2e-3
    with pytest.raises(DuplicateName, match="mode 'full'"):  # a built-in name too
        tunesuite.register_mode("full", help="mine", learning_rate=1e-3)(_keep_nothing)
    assert registry.modes()["full"].help == "every parameter"


def test_tasks_families_demos_and_recipes_refuse_a_taken_name(cleanup):
    text = tunesuite.get_task("text-classification")
    with pytest.raises(DuplicateName, match="task 'text-classification'"):
        tunesuite.register_task(text)
    registry.families()
    with pytest.raises(DuplicateName, match="family 'bert'"):
        registry.register_family(Family("bert"))
    with pytest.raises(DuplicateName, match="recipe 'frozen-then-full'"):
        registry.register_recipe(Recipe("frozen-then-full", "frozen", "again", lambda epochs, params: {}))
    cleanup.append((registry.DEMOS, "demo-twice"))
    tunesuite.register_demo("demo-twice")(lambda: None)
    with pytest.raises(DuplicateName, match="demo 'demo-twice'"):
        tunesuite.register_demo("demo-twice")(lambda: None)


def test_the_same_registration_again_is_a_reimport_not_a_clash(cleanup):
    cleanup.append((registry.FAMILIES, "test-type"))
    for help_ in ("first", "again"):  # one line run twice: what a reload or `python -m` then import does
        registry.register_family(Family("test-type", modality=help_))
    assert registry.find_family("test-type").modality == "again"
    importlib.import_module("tunesuite.demos")
    importlib.reload(importlib.import_module("tunesuite.demos.text"))  # registers its demo again: no error
    assert registry.find_demo("text-classification") is not None


def test_the_default_mode_is_one_constant():
    assert inspect.signature(tunesuite.finetune).parameters["mode"].default == registry.DEFAULT_MODE
    assert RunArgs().mode == registry.DEFAULT_MODE and registry.DEFAULT_MODE in registry.modes()


def test_learning_rate_follows_the_model_size():
    lora = registry.modes()["lora"]
    assert lora.learning_rate_for(registry.SMALL_MODEL - 1) == lora.small_model_learning_rate == 1e-2
    assert lora.learning_rate_for(registry.SMALL_MODEL) == lora.learning_rate == 2e-3
    assert lora.learning_rate_for(None) == lora.learning_rate  # size unknown: the larger models' rate
    plain = registry.Mode("plain", _keep_nothing, "x", learning_rate=3e-4)
    assert plain.learning_rate_for(1) == plain.learning_rate_for(10**9) == 3e-4  # one rate: for every size


@pytest.fixture
def used_rates(monkeypatch):
    """The learning rate of every Trainer built from here on, in order."""
    from tunesuite.train import recipe

    rates: list[float] = []
    real = recipe.build

    def build(task, cfg):
        trainer, prepared = real(task, cfg)
        rates.append(trainer.args.learning_rate)
        return trainer, prepared

    monkeypatch.setattr(recipe, "build", build)
    return rates


def test_compare_auto_and_mode_lora_train_at_the_same_learning_rate(pretrained_bert, topic_data, tmp_path,
                                                                      used_rates):
    compared = tunesuite.compare("text-classification", str(pretrained_bert), str(topic_data), modes=["lora"],
                                 output_dir=str(tmp_path / "cmp"), **QUIET)
    assert compared["summary"][0]["status"] == "ok"
    asked = tmp_path / "lora"
    tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode="lora",
                       output_dir=str(asked), **QUIET)
    by_compare = yaml.safe_load((tmp_path / "cmp" / "lora" / "seed-42" / "run_config.yaml").read_text())
    by_mode = yaml.safe_load((asked / "run_config.yaml").read_text())
    assert by_compare["learning_rate"] == by_mode["learning_rate"] == used_rates[0] == used_rates[1]
    params = count_params(str(pretrained_bert))
    assert used_rates[0] == registry.modes()["lora"].learning_rate_for(params) == 1e-2  # the tiny BERT is small
    facts = auto.Facts(5000, 4, params)
    assert auto.settings("lora", facts, {})["learning_rate"] == used_rates[0]  # --mode auto's choice of lora
    # a learning rate the user sets wins on every path
    given = tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode="lora",
                               output_dir=str(tmp_path / "given"), learning_rate=3e-4, **QUIET)
    assert given and used_rates[2] == 3e-4


@pytest.fixture
def probe_mode(cleanup):
    """A mode and a recipe registered from outside, each with an auto rule that only 12,345 examples match."""
    cleanup.extend([(registry.MODES, "probe"), (registry.RECIPES, "probe-twice")])
    tunesuite.register_mode("probe", help="nothing new", learning_rate=4e-4, small_model_learning_rate=4e-2,
                            auto=AutoRule(1, lambda f: f.examples == 12_345, "the probe's own data"))(_keep_nothing)
    registry.register_recipe(Recipe("probe-twice", "probe", "the probe, longer",
                                    lambda epochs, params: {"num_train_epochs": 2 * epochs},
                                    auto=AutoRule(2, lambda f: f.examples == 54_321, "the probe's other data")))
    return registry.modes()["probe"]


def test_compare_candidates_and_auto_rules_come_from_the_registry(probe_mode):
    assert runs.default_candidates() == ["full", "frozen", "lora", "prompt", "probe", "frozen-then-full",
                                         "probe-twice"]  # bitfit registers compared=False
    assert {"bitfit", "probe", "probe-twice"} <= set(runs.candidate_names())
    rules = auto.rules()
    assert [r.mode for r in rules] == ["probe", "probe-twice", "frozen", "frozen-then-full", "full", "lora"]
    small, large = auto.Facts(12_345, 4, 1000), auto.Facts(12_345, 4, 10**8)
    assert next(r for r in rules if r.test(small)).why == "the probe's own data"
    assert runs.settings("probe", small, {})["learning_rate"] == 4e-2
    assert runs.settings("probe", large, {})["learning_rate"] == 4e-4
    twice = auto.settings("probe-twice", large, {"num_train_epochs": 3})  # (compare puts the user's on top)
    assert twice["mode"] == "probe" and twice["num_train_epochs"] == 6 and twice["learning_rate"] == 4e-4
    assert next(r for r in rules if r.test(auto.Facts(54_321, None, 1000))).mode == "probe-twice"


def test_task_callables_take_what_their_protocol_says():
    """Each registered task's callable binds the positional parameters its Protocol's __call__ names."""
    for name in ("text-classification", "image-classification", "asr", "audio-classification"):
        task = tunesuite.get_task(name)
        for spec in (task.model, task.data, task.results):
            hints = typing.get_type_hints(type(spec), vars(registry))
            for field_name, hint in hints.items():
                protocol = next((a for a in (hint, *typing.get_args(hint)) if getattr(a, "_is_protocol", False)),
                                None)
                value = getattr(spec, field_name)
                if protocol is None or value is None:
                    continue
                wanted = [p for p in inspect.signature(protocol.__call__).parameters if p != "self"]
                inspect.signature(value).bind(*wanted)  # raises TypeError when the arity differs


def test_the_candidates_keep_their_order_when_an_entry_is_put_back(monkeypatch):
    """A mode removed and registered again (a test, a plugin reloaded) keeps its place: compare's table and auto's
    tie-breaks do not depend on what ran before."""
    before = runs.default_candidates()
    monkeypatch.delitem(registry.MODES, "lora")
    monkeypatch.undo()  # puts it back at the end of the dict
    assert list(registry.MODES)[-1] == "lora"  # the dict order did change
    assert runs.default_candidates() == before and before.index("lora") < before.index("prompt")
