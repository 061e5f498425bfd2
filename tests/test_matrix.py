"""Every task setup x every registered mode: a short run trains exactly what the mode says, writes its outputs,
reloads to identical predictions, and learns the toy problem. And one table of exact trainable names per task,
mode and flag (TRAINABLE)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import jiwer
import pytest
import torch
import yaml
from conftest import SETUPS, Run, model_after_mode, trainable_names

import tunesuite
from tunesuite.errors import TunesuiteError
from tunesuite.models.families import layer_stack

BUILTIN = {"full", "frozen", "lora", "prompt", "bitfit"}
# peft's other methods (modes/peft_methods.py) -> how their adapter parameters' names start (peft's
# adapter_layer_names); the family matrix (test_families.py) runs them, so the task matrix below leaves them out
PEFT_ADAPTERS = {"ia3": "ia3_l.", "loha": "hada_", "lokr": "lokr_", "vera": "vera_lambda_", "oft": "oft_R.",
                 "adalora": "lora_", "boft": "boft_", "fourierft": "fourierft_spectrum.", "hra": "hra_u.",
                 "miss": "miss_block.", "c3a": "c3a_kernel.", "shira": "shira_weight.", "randlora": "randlora_",
                 "vblora": "vblora_", "ln_tuning": "ln_tuning_layers.", "road": "road_", "delora": "delora_",
                 "waveft": "waveft_spectrum.", "gralora": "gralora_", "tinylora": "tinylora_v.",
                 "unilora": "unilora_theta_d.", "pvera": "pvera_lambda_", "deft": "deft_", "glora": "glora_",
                 "psoft": "psoft_R.", "hira": "hira_", "supertuning": "supertuning_", "beft": "beft_bias.",
                 "adamss": "adamss_", "peanut": "peanut_", "frod": "frod_lambda_"}
TEST_ROWS = {"text": 30, "image-vit": 12, "image-resnet": 12, "speech": 8, "audio": 12, "whisper-asr": 8,
             "whisper-audio": 12}
# short runs far from good scores: the training loss must fall below this share of the same run's at learning rate 0
# (the random tiny Whisper's pooled encoder states barely tell the pitches apart: its loss falls slowly)
LOSS_FALLS = {"speech": 0.99, "whisper-asr": 0.99, "whisper-audio": 0.997}


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
    elif mode in PEFT_ADAPTERS:  # the method's adapter weights and the head's copies, nothing else
        adapters = {n for n in names if f".{PEFT_ADAPTERS[mode]}" in n}
        assert adapters and copies and trained == adapters | copies, sorted(trained ^ (adapters | copies))
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
    if setup in LOSS_FALLS:  # the same run with learning rate 0: same batches, same start; only the updates differ
        still = trained(setup, mode, learning_rate=0.0, do_predict=False)
        assert run.result["train_loss"] < LOSS_FALLS[setup] * still.result["train_loss"], (run.result, still.result)
    elif mode in SETUPS[setup].modes:  # tuned to learn in a few epochs (a user's mode runs at its default rate)
        assert run.result["eval_accuracy"] >= 0.9 and run.result["test_accuracy"] >= 0.9, run.result


@pytest.mark.parametrize("mode", [m for m in tunesuite.MODES if m not in PEFT_ADAPTERS
                                  and not tunesuite.MODES[m].trains_nothing  # those: test_no_training.py
                                  and not tunesuite.MODES[m].fits])  # test_setfit_mode.py
@pytest.mark.parametrize("setup", list(SETUPS))
def test_mode_on_task(trained, setup, mode):
    if mode in SETUPS[setup].refused:  # one error line naming the model type, before anything trains
        with pytest.raises(TunesuiteError) as refused:
            trained(setup, mode)
        assert "\n" not in str(refused.value) and "whisper" in str(refused.value)
        return
    run = trained(setup, mode)
    check_trainable(run, mode)
    check_outputs(run, setup, mode)
    check_reload(run, setup)
    check_learns(run, setup, mode, trained)


# --- The trainable set by name: one row per task, mode and flag ---------------------------------------------------


def _all(model) -> set[str]:
    return {n for n, _ in model.named_parameters()}


def params_under(model, prefix: str) -> set[str]:
    """Every parameter under `prefix`; there must be some (a row about an empty set asserts nothing)."""
    found = {n for n in _all(model) if n.startswith(prefix)}
    assert found, prefix
    return found


def everything(model) -> set[str]:
    return _all(model)


def everything_but(prefix: str) -> Callable:
    return lambda model: _all(model) - params_under(model, prefix)


def exactly(*names: str) -> Callable:
    return lambda model: set(names)


def head_and_top_layer(head: tuple[str, ...], stack: str) -> Callable:
    """The head and the top layer (index 1 of 2) of the family's layer stack, which must be `stack`."""

    def expect(model) -> set[str]:
        assert layer_stack(model)[0] == stack
        return set(head) | params_under(model, f"{stack}.1.")

    return expect


def copies(prefix: str, head: dict[str, tuple[str, ...]]) -> set[str]:
    """peft's trainable copies of the head modules: `{prefix}{module}.modules_to_save.default.{param}`."""
    return {f"{prefix}{module}.modules_to_save.default.{p}" for module, params in head.items() for p in params}


def plain(head: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(f"{module}.{p}" for module, params in head.items() for p in params)


BERT_HEAD = {"classifier": ("weight", "bias"), "bert.pooler": ("dense.weight", "dense.bias")}
W2V_HEAD = {"lm_head": ("weight", "bias")}


def lora_on(stack: str, targets: tuple[str, ...], head: set[str]) -> Callable:
    """LoRA A and B on `targets` in both layers of `stack`, plus the head's copies."""
    return lambda model: {f"{stack}.{i}.{m}.lora_{ab}.default.weight" for i in (0, 1) for m in targets
                          for ab in "AB"} | head


def image_lora(arch: str) -> Callable:
    def expect(model) -> set[str]:
        modules = {n for n, _ in model.named_modules()}
        if arch == "vit":
            adapted = {f"base_model.model.vit.layers.{i}.attention.{m}" for i in (0, 1) for m in ("q_proj", "v_proj")}
        else:
            adapted = {n.rsplit(".lora_A", 1)[0] for n in modules if n.endswith("convolution.lora_A")}
            assert len(adapted) == 6  # stem + 2 + 3 (stage 2 has a projection shortcut)
        copy = "base_model.model.classifier.modules_to_save.default." + ("1." if arch == "resnet" else "")
        return {f"{m}.lora_{ab}.default.weight" for m in adapted for ab in "AB"} | {copy + "weight", copy + "bias"}

    return expect


def p_tuning(model) -> set[str]:
    """The prompt encoder (its embedding and its MLP) and the head's copies; nothing of BERT itself."""
    encoder = params_under(model, "prompt_encoder.default.")
    assert "prompt_encoder.default.embedding.weight" in encoder
    assert params_under(model, "prompt_encoder.default.mlp_head")
    return encoder | copies("base_model.", BERT_HEAD)


@dataclass(frozen=True)
class Trainable:
    """One row: a task's tiny model and data (fixture names), a mode and its flags; what trains, by name (`expect`
    from the model after the mode), among the parameters `only` selects (all of them unless given)."""

    task: str
    model: str
    data: str
    mode: str
    argv: tuple[str, ...]
    expect: Callable
    only: Callable[[str], bool] | None = None


TEXT = ("text-classification", "pretrained_bert", "topic_data")
SPEECH = ("automatic-speech-recognition", "tiny_w2v", "tone_data")
IMAGE_HEAD = {"vit": ("classifier.weight", "classifier.bias"), "resnet": ("classifier.1.weight", "classifier.1.bias")}
IMAGE_STACK = {"vit": "vit.layers", "resnet": "resnet.encoder.stages"}
VISUAL_PROMPT = {"vit": ("prompt.tokens",), "resnet": ("prompt.top", "prompt.bottom", "prompt.left", "prompt.right")}
BERT = "base_model.model.bert.encoder.layer"
W2V = "base_model.model.wav2vec2.encoder.layers"

TRAINABLE = {
    "text-full": Trainable(*TEXT, "full", (), everything),
    "text-frozen": Trainable(*TEXT, "frozen", (), exactly(*plain(BERT_HEAD))),
    "text-frozen-top1": Trainable(*TEXT, "frozen", ("--trainable-layers", "1"),
                                  head_and_top_layer(plain(BERT_HEAD), "bert.encoder.layer")),
    "text-lora": Trainable(*TEXT, "lora", (), lora_on(BERT, ("attention.self.query", "attention.self.value"),
                                                      copies("base_model.model.", BERT_HEAD))),
    "text-lora-key": Trainable(*TEXT, "lora", ("--lora-target-modules", "key"),
                               lora_on(BERT, ("attention.self.key",), set()), only=lambda n: "lora" in n),
    "text-prompt": Trainable(*TEXT, "prompt", (), exactly("prompt_encoder.default.embedding.weight",
                                                          *copies("base_model.", BERT_HEAD))),
    "text-p-tuning": Trainable(*TEXT, "prompt", ("--prompt-method", "p_tuning"), p_tuning),
    **{f"image-{arch}-{name}": Trainable("image-classification", f"tiny_{arch}", "image_data", mode, argv, expect)
       for arch in ("vit", "resnet") for name, mode, argv, expect in (
           ("full", "full", (), everything),
           ("frozen", "frozen", (), exactly(*IMAGE_HEAD[arch])),
           ("frozen-top1", "frozen", ("--trainable-layers", "1"), head_and_top_layer(IMAGE_HEAD[arch],
                                                                                      IMAGE_STACK[arch])),
           ("lora", "lora", (), image_lora(arch)),
           ("prompt-deep", "prompt", ("--num-virtual-tokens", "3", "--prompt-depth", "deep", "--prompt-pad", "2"),
            exactly(*IMAGE_HEAD[arch], *VISUAL_PROMPT[arch])))},
    # the conv feature encoder stays frozen by default
    "speech-full": Trainable(*SPEECH, "full", (), everything_but("wav2vec2.feature_extractor.")),
    "speech-full-unfrozen": Trainable(*SPEECH, "full", ("--no-freeze-feature-encoder",), everything),
    "speech-frozen": Trainable(*SPEECH, "frozen", (), exactly(*plain(W2V_HEAD))),
    "speech-frozen-top1": Trainable(*SPEECH, "frozen", ("--trainable-layers", "1"),
                                    head_and_top_layer(plain(W2V_HEAD), "wav2vec2.encoder.layers")),
    "speech-lora": Trainable(*SPEECH, "lora", (), lora_on(W2V, ("attention.q_proj", "attention.v_proj"),
                                                          copies("base_model.model.", W2V_HEAD))),
    "speech-lora-k": Trainable(*SPEECH, "lora", ("--lora-target-modules", "k_proj"),
                               lora_on(W2V, ("attention.k_proj",), set()), only=lambda n: "lora_" in n),
    "speech-prompt": Trainable(*SPEECH, "prompt", ("--num-virtual-tokens", "3"),
                               exactly(*plain(W2V_HEAD), "prompt.frames")),
    # Whisper's encoder alone (modes/whisper_prompts.py): tokens at the encoder's input (deep: one set per layer) +
    # projector and classifier (speech recognition's frames: the matrix's whisper-asr row and test_whisper.py)
    "whisper-audio-prompt-deep": Trainable("audio-classification", "tiny_whisper_model", "pitch_data", "prompt",
                                           ("--num-virtual-tokens", "3", "--prompt-depth", "deep"),
                                           exactly("prompt.tokens", "projector.weight", "projector.bias",
                                                   "classifier.weight", "classifier.bias")),
}


@pytest.mark.parametrize("row", list(TRAINABLE))
def test_trainable_set_by_name(request, tmp_path, row):
    """Right after the mode applies, exactly these parameters train (the matrix above checks the rules per mode;
    this table pins the names, flag by flag)."""
    spec = TRAINABLE[row]
    model = model_after_mode(spec.task, request.getfixturevalue(spec.model), request.getfixturevalue(spec.data),
                             tmp_path, spec.mode, *spec.argv)
    trained = {n for n in trainable_names(model) if spec.only is None or spec.only(n)}
    assert trained == spec.expect(model)
