"""Frozen weights cast once (train/feature_cache/frozen_casts.py) and the encoder cache's bf16 step that uses them:
under autocast the decoder on the cached states (kept in bf16, the frozen linear weights swapped for their bf16
copies) gives exactly the loss and the gradients of the step before the change (states cast to fp32 every step,
every frozen weight cast by autocast on every call), and every parameter is the model's own again afterwards."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

from tunesuite.train.feature_cache.encoder import CachedEncoder
from tunesuite.train.feature_cache.frozen_casts import FrozenCasts, autocast_dtype
from tunesuite.train.feature_cache.partial import CACHED

BF16 = torch.autocast("cpu", dtype=torch.bfloat16)


def test_only_frozen_linears_are_swapped_and_all_come_back():
    torch.manual_seed(0)
    embed = nn.Embedding(10, 4)
    frozen, trained, skipped = nn.Linear(4, 10), nn.Linear(4, 4), nn.Linear(4, 4)
    frozen.weight = embed.weight  # tied, as Whisper's output projection is to its embeddings
    for p in [*embed.parameters(), *frozen.parameters(), *skipped.parameters()]:
        p.requires_grad_(False)
    model = nn.ModuleDict({"embed": embed, "frozen": frozen, "trained": trained, "skipped": skipped})
    casts = FrozenCasts(model, skip=skipped)
    assert casts.layers == [frozen]
    own = {name: p for name, p in model.named_parameters(remove_duplicate=False)}
    x = torch.randn(3, 4)
    with BF16:
        before = frozen(x)
        with casts.swapped(torch.bfloat16):
            assert frozen.weight.dtype == frozen.bias.dtype == torch.bfloat16
            assert embed.weight.dtype == torch.float32 and trained.weight.dtype == torch.float32
            after = frozen(x)
    assert torch.equal(before, after)  # autocast's own cast, made once
    assert all(p is own[name] for name, p in model.named_parameters(remove_duplicate=False))
    with pytest.raises(RuntimeError), casts.swapped(torch.bfloat16):
        raise RuntimeError("a step that fails")
    assert frozen.weight is embed.weight and frozen.bias is own["frozen.bias"]
    first = casts.cast(torch.bfloat16)
    assert casts.cast(torch.bfloat16) is first  # once per dtype


def test_autocast_dtype_says_what_autocast_runs_at():
    x = torch.zeros(1)
    assert autocast_dtype(x) is None
    with BF16:
        assert autocast_dtype(x) == torch.bfloat16


def _decoder_only_lora(model):
    from peft import LoraConfig, get_peft_model

    modules = [f"model.decoder.layers.{i}.{part}.{proj}" for i in range(model.config.decoder_layers)
               for part in ("self_attn", "encoder_attn") for proj in ("q_proj", "v_proj")]
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=modules))


@pytest.mark.parametrize("adapt", ["frozen", "lora"])
def test_bf16_cached_step_is_the_step_it_replaces(tiny_whisper_model, adapt):  # noqa: F811
    from transformers import AutoModelForSpeechSeq2Seq

    torch.manual_seed(0)
    model = AutoModelForSpeechSeq2Seq.from_pretrained(str(tiny_whisper_model))
    model.model.encoder.requires_grad_(False)
    model.model.decoder.embed_tokens.requires_grad_(False)  # tied to the output projection: a frozen linear
    if adapt == "lora":
        model = _decoder_only_lora(model)
        for p in model.parameters():  # B at zero would make every LoRA gradient but B's vanish
            if p.requires_grad:
                nn.init.normal_(p, std=0.1)
    model.eval()
    frames, width = model.config.max_source_positions, model.config.d_model
    states = torch.randn(2, frames, width).to(torch.bfloat16)
    labels = torch.tensor([[3, 4, 5, -100], [6, 7, 8, 9]])
    cached = CachedEncoder(model)
    assert cached.frozen.layers  # the output projection at least

    def step(new: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        with BF16:
            if new:
                loss = cached(labels=labels, **{CACHED: states}).loss
            else:  # before: the states in fp32, autocast casting every frozen weight
                loss = model(encoder_outputs=BaseModelOutput(last_hidden_state=states.float()), labels=labels).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    old_loss, old_grads = step(new=False)
    new_loss, new_grads = step(new=True)
    assert torch.equal(old_loss, new_loss)
    assert len(old_grads) == len(new_grads) > 0 and all(torch.equal(a, b) for a, b in zip(old_grads, new_grads,
                                                                                            strict=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the model's own weights again
