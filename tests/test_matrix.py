"""Every task setup x every registered mode: a short run trains exactly what the mode says, writes its outputs,
reloads to identical predictions, and learns the toy problem."""

from __future__ import annotations

import json

import jiwer
import pytest
import torch
import yaml
from conftest import SETUPS, Run

import tunesuite

BUILTIN = {"full", "frozen", "lora", "prompt", "bitfit"}
TEST_ROWS = {"text": 30, "image-vit": 12, "image-resnet": 12, "speech": 8, "audio": 12}


def _module(name: str) -> str:
    """A parameter's name as in the unwrapped model: peft's prefixes and head copies taken off."""
    for prefix in ("base_model.model.", "base_model."):
        name = name.removeprefix(prefix)
    return name.replace(".modules_to_save.default.", ".")


def _under(name: str, modules: list[str]) -> bool:
    return any(_module(name).startswith(m + ".") for m in modules)


def check_trainable(run: Run, mode: str) -> None:
    trained, names, head = run.trainable, run.names, run.head
    copies = {n for n in names if ".modules_to_save." in n}  # peft's trainable copies of the head
    plain_head = {n for n in names if _under(n, head) and ".original_module." not in n} - copies
    assert head and all(any(_under(n, [h]) for n in trained) for h in head), (head, trained)  # the head trains
    if mode == "full":
        assert trained == names
    elif mode == "frozen":
        assert trained == plain_head
    elif mode == "bitfit":
        assert trained == plain_head | {n for n in names if n.endswith(".bias")}
    elif mode == "lora":
        adapters = {n for n in names if ".lora_A." in n or ".lora_B." in n}
        assert adapters and copies and trained == adapters | copies
    elif mode == "prompt":
        prompts = {n for n in names if n.startswith(("prompt.", "prompt_encoder."))}
        assert prompts and trained == prompts | copies | plain_head
    else:  # a user's mode: no rule by name, but something beyond nothing trains
        assert mode not in BUILTIN and trained


def _rows(run: Run) -> list[dict]:
    return [json.loads(line) for line in (run.out / "predictions.jsonl").read_text().splitlines()]


def check_outputs(run: Run, setup: str, mode: str) -> None:
    spec, result, out = SETUPS[setup], run.result, run.out
    saved = json.loads((out / "all_results.json").read_text())
    main = tunesuite.get_task(spec.task).results.main_metric
    assert saved[f"test_{main}"] == result[f"test_{main}"] and f"eval_{main}" in saved
    assert yaml.safe_load((out / "run_config.yaml").read_text())["mode"] == mode
    for name in spec.reports:
        assert (out / name).exists(), name
    rows = _rows(run)
    assert len(rows) == TEST_ROWS[setup] and all(spec.fields[0] in r and "reference" in r for r in rows)
    output = spec.fields[1]
    if main == "accuracy":  # the metric, recomputed from the rows written
        assert {"eval_macro_f1", "test_macro_f1"} <= saved.keys()
        hits = [r[output] == r["reference"] for r in rows]
        assert sum(hits) / len(rows) == pytest.approx(result["test_accuracy"])
    else:
        assert all(r[output] for r in rows)  # not blank: the reload comparison below means something
        refs, hyps = [r["reference"] for r in rows], [r[output] for r in rows]
        assert jiwer.wer(refs, hyps) == pytest.approx(result["test_wer"])


def check_reload(run: Run, setup: str) -> None:
    """Two loads give the same logits; tunesuite.predict gives what the run itself predicted for its test split."""
    (field, saved_output, output), rows = SETUPS[setup].fields, _rows(run)
    items = [r[field] for r in rows]
    first, second = tunesuite.load(run.out), tunesuite.load(run.out)
    assert torch.equal(first.logits(items), second.logits(items))
    predicted = first.predict(items)
    assert predicted == tunesuite.predict(run.out, items)
    assert [p[output] for p in predicted] == [r[saved_output] for r in rows]


def check_learns(run: Run, setup: str, mode: str, trained) -> None:
    if setup == "speech":  # the same run with learning rate 0: same batches, same start; only the updates differ
        still = trained(setup, mode, learning_rate=0.0, do_predict=False)
        assert run.result["train_loss"] < 0.99 * still.result["train_loss"], (run.result, still.result)
    elif mode in SETUPS[setup].modes:  # tuned to learn in a few epochs (a user's mode runs at its default rate)
        assert run.result["eval_accuracy"] >= 0.9 and run.result["test_accuracy"] >= 0.9, run.result


@pytest.mark.parametrize("mode", list(tunesuite.MODES))
@pytest.mark.parametrize("setup", list(SETUPS))
def test_mode_on_task(trained, setup, mode):
    run = trained(setup, mode)
    check_trainable(run, mode)
    check_outputs(run, setup, mode)
    check_reload(run, setup)
    check_learns(run, setup, mode, trained)
