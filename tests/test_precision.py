"""--bf16 on a machine without a GPU: every task x mode trains under the Trainer's CPU autocast (matrix products
in bfloat16), the losses stay float32 (CTC in particular), and nothing but --bf16 is needed."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from conftest import SETUPS

import tunesuite
from tunesuite.config import precision

pytestmark = pytest.mark.skipif(torch.accelerator.is_available(), reason="the CPU path: this machine has a GPU")
SHORT = {"max_steps": 2, "eval_strategy": "no", "save_strategy": "no", "do_predict": False, "logging_steps": 1,
         "num_train_epochs": 1}
MODES = ("full", "frozen", "lora", "prompt", "bitfit")


@pytest.fixture
def dtypes(monkeypatch):
    """What the runs compute in: the output dtypes of every nn.Linear and of every loss called while training."""
    seen: dict[str, set] = {"linear": set(), "loss": set()}

    def linear_hook(module, _args, output):
        if isinstance(module, torch.nn.Linear) and torch.is_grad_enabled():
            seen["linear"].add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(linear_hook)
    for name in ("cross_entropy", "ctc_loss"):
        original = getattr(torch.nn.functional, name)

        def recorded(*args, _original=original, **kwargs):
            loss = _original(*args, **kwargs)
            if torch.is_grad_enabled():
                seen["loss"].add(loss.dtype)
            return loss

        monkeypatch.setattr(torch.nn.functional, name, recorded)
    yield seen
    handle.remove()


@pytest.mark.parametrize("setup", ["text", "image-vit", "speech", "audio"])
@pytest.mark.parametrize("mode", MODES)
def test_bf16_trains_on_the_cpu_with_float32_losses(setup, mode, request, tmp_path, dtypes, log):
    spec = SETUPS[setup]
    flags = {**spec.common, **spec.modes[mode], **SHORT, "bf16": True}
    if setup == "image-vit":
        flags["augment"] = False  # frozen: through the feature cache, whose head trainer inherits bf16
    model, data = request.getfixturevalue(spec.model), request.getfixturevalue(spec.data)
    for seen in dtypes.values():
        seen.clear()  # what building the session's fixtures computed is not this run
    result = tunesuite.finetune(spec.task, str(model), str(data), mode=mode, output_dir=str(tmp_path), **flags)
    assert math.isfinite(result["train_loss"])
    assert torch.bfloat16 in dtypes["linear"] and torch.float32 not in dtypes["linear"], dtypes
    assert dtypes["loss"] == {torch.float32}, dtypes  # cross-entropy, CTC: float32 under autocast
    assert "bf16 on CPU: torch.autocast(cpu, bfloat16)" in log.text or not precision.native_bf16()
    saved = yaml.safe_load((tmp_path / "run_config.yaml").read_text())
    assert saved["bf16"] is True and "use_cpu" not in saved  # per machine: the config repeats on a GPU too


def test_bf16_implies_use_cpu_only_without_an_accelerator(tiny_bert, topic_data, tmp_path):
    from tunesuite.cli import parse_args

    task = tunesuite.get_task("text-classification")
    base = ["--model", str(tiny_bert), "--dataset", str(topic_data), "--output-dir", str(tmp_path)]
    assert parse_args(task, [*base, "--bf16"]).training.use_cpu
    assert not parse_args(task, base).training.use_cpu  # float32 runs are left as they were


@pytest.mark.parametrize("setup", ["text", "image-vit", "speech"])
def test_bf16_on_the_cpu_trains_with_eager_attention_unless_told(setup, request, tmp_path, log):
    """auto: eager attention for bf16 on the CPU (faster there than sdpa), the library's default for float32;
    an explicit --attn-implementation wins either way."""
    from tunesuite.cli import keyword_config
    from tunesuite.train.recipe import build

    spec = SETUPS[setup]
    model, data = request.getfixturevalue(spec.model), request.getfixturevalue(spec.data)
    task = tunesuite.get_task(spec.task)

    def attention(**flags) -> str:
        settings = {**spec.common, **spec.modes["lora"], **SHORT, "model": str(model), "dataset": str(data),
                    "mode": "lora", "output_dir": str(tmp_path), **flags}
        trainer, _ = build(task, keyword_config(task, settings))
        return trainer.model.config._attn_implementation

    assert attention(bf16=True) == "eager"
    assert "attention: eager (auto: faster than sdpa for bf16 on a CPU;" in log.text
    assert attention() == "sdpa"
    assert attention(bf16=True, attn_implementation="sdpa") == "sdpa"


def test_bf16_partial_cache_pass_runs_under_the_runs_autocast(request, tmp_path, log):
    """The frozen layers' one pass (the partial cache) computes in bf16 like the rest of a bf16 run: every Linear
    outside autograd (that pass, the evaluations) gives bfloat16."""
    spec = SETUPS["text"]
    model, data = request.getfixturevalue(spec.model), request.getfixturevalue(spec.data)
    seen = set()

    def no_grad_linear(module, _args, output):
        if isinstance(module, torch.nn.Linear) and not torch.is_grad_enabled():
            seen.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(no_grad_linear)
    try:
        tunesuite.finetune(spec.task, str(model), str(data), mode="frozen", trainable_layers=1,
                           output_dir=str(tmp_path), **{**spec.common, **SHORT, "bf16": True})
    finally:
        handle.remove()
    assert "partial feature cache: the 1 frozen layers below layer 1 computed once" in log.text, log.text
    assert seen == {torch.bfloat16}, seen


def test_bf16_on_the_cpu_keeps_sdpa_for_an_encoder_fed_a_long_fixed_input(tmp_path, tiny_bert):
    """Whisper's encoder always reads 1500 frames: sdpa is the faster there, so auto keeps it (a short-input
    encoder-decoder and a BERT get eager, as every bf16 CPU run did)."""
    from types import SimpleNamespace

    from transformers import WhisperConfig

    bf16_cpu, fp32 = SimpleNamespace(bf16=True, use_cpu=True), SimpleNamespace(bf16=False, use_cpu=False)
    for frames in (1500, 50):
        WhisperConfig(d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=1,
                      decoder_attention_heads=1, max_source_positions=frames).save_pretrained(tmp_path / str(frames))
    assert precision.attention_choice("auto", bf16_cpu, str(tmp_path / "1500"))[0] == "sdpa"
    assert precision.attention_choice("auto", bf16_cpu, str(tmp_path / "50"))[0] == "eager"
    assert precision.attention_choice("auto", bf16_cpu, str(tiny_bert))[0] == "eager"
    assert precision.attention_choice("auto", bf16_cpu, str(tmp_path / "absent"))[0] == "eager"
    assert precision.attention_choice("auto", fp32, str(tmp_path / "1500"))[0] is None
    assert precision.attention_choice("eager", bf16_cpu, str(tmp_path / "1500"))[0] == "eager"
