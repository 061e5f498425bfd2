"""Whisper's prompts (modes/whisper_prompts.py) on random tiny Whispers built from a config: speech recognition's
frames reach every decoder layer's cross-attention in training and in `generate`, and give the same loss from a
cached encoder output; the classifier's tokens enter the encoder and leave it (hidden states too), and what they
change in the pooled features differs per clip (not a bias); depth and count are honoured or refused in one line."""

from __future__ import annotations

import pytest
import torch
from transformers import WhisperConfig, WhisperForAudioClassification, WhisperForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from tunesuite.errors import TunesuiteError
from tunesuite.modes import own_prompts, whisper_prompts  # noqa: F401 (registers the whisper kind)

FRAMES, TOKENS = 50, 3  # encoder positions (100 mel frames), prompt frames/tokens


def _config(**extra) -> WhisperConfig:
    """Eager attention: it returns the attention weights the frames' test counts."""
    return WhisperConfig(attn_implementation="eager", vocab_size=40, num_mel_bins=8, d_model=16, encoder_layers=2,
                         decoder_layers=2,
                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                         max_source_positions=FRAMES, max_target_positions=16, decoder_start_token_id=1,
                         eos_token_id=2, pad_token_id=2, bos_token_id=1, init_std=0.3, **extra)


def _features(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 8, 2 * FRAMES, generator=torch.Generator().manual_seed(seed))


def _prompted(model: torch.nn.Module, depth: str = "shallow") -> torch.nn.Module:
    torch.manual_seed(0)
    model = own_prompts.attach(model.eval(), {"num_virtual_tokens": TOKENS, "depth": depth}, "speech")
    with torch.no_grad():  # large enough to matter in a random model
        for p in model.prompt.parameters():
            p.mul_(50)
    return model


def test_asr_frames_reach_the_decoder_in_training_generation_and_from_a_cache():
    torch.manual_seed(0)
    model = _prompted(WhisperForConditionalGeneration(_config()))
    assert model.config.tunesuite_prompt["kind"] == "whisper"
    features, labels = _features(1), torch.tensor([[5, 6, 7, 2], [8, 9, 2, 2]])
    out = model(input_features=features, labels=labels, output_attentions=True)
    # every decoder layer reads them
    assert out.cross_attentions and all(a.shape[-1] == FRAMES + TOKENS for a in out.cross_attentions)
    assert out.encoder_last_hidden_state.shape[1] == FRAMES  # the encoder's own output is untouched
    out.loss.backward()
    assert model.prompt.frames.grad.abs().sum() > 0
    cached = model(encoder_outputs=BaseModelOutput(last_hidden_state=model.get_encoder()(features).last_hidden_state),
                   labels=labels).loss
    assert torch.allclose(cached, out.loss)  # the encoder cache's path: the prompt applies after it
    generated = model.generate(features, max_new_tokens=3, output_attentions=True, return_dict_in_generate=True)
    assert generated.cross_attentions and generated.cross_attentions[0][0].shape[-1] == FRAMES + TOKENS
    with torch.no_grad():
        plain = model(input_features=features, labels=labels).loss
        model.prompt.frames.zero_()
        assert not torch.allclose(plain, model(input_features=features, labels=labels).loss)


@pytest.mark.parametrize("depth", ["shallow", "deep"])
def test_classifier_tokens_enter_the_encoder_and_leave_it(depth):
    torch.manual_seed(0)
    plain = WhisperForAudioClassification(_config(num_labels=3, use_weighted_layer_sum=True)).eval()
    model = _prompted(WhisperForAudioClassification(_config(num_labels=3, use_weighted_layer_sum=True)), depth)
    model.load_state_dict(plain.state_dict(), strict=False)
    assert model.prompt.tokens.shape[0] == (2 if depth == "deep" else 1)
    features = _features(2)
    states = model.encoder(features, output_hidden_states=True)
    assert states.last_hidden_state.shape[1] == FRAMES and all(h.shape[1] == FRAMES for h in states.hidden_states)

    def pooled(m: torch.nn.Module) -> torch.Tensor:
        seen = {}
        m.classifier.register_forward_hook(lambda _m, args, _o: seen.update(x=args[0]))
        m(features)
        return seen["x"]

    with torch.no_grad():
        before = pooled(plain)
        change, scale = pooled(model) - before, before.abs().max()
    assert change.abs().max() > 1e-2 * scale  # the tokens change what the head pools...
    assert (change[0] - change[1]).abs().max() > 1e-3 * scale  # ...and not by the same vector for every clip


def test_depth_and_count_are_refused_in_one_line():
    with pytest.raises(TunesuiteError, match="--prompt-depth deep") as deep:
        _prompted(WhisperForConditionalGeneration(_config()), "deep")
    with pytest.raises(TunesuiteError, match="--num-virtual-tokens 0") as none:
        own_prompts.attach(WhisperForAudioClassification(_config()), {"num_virtual_tokens": 0}, "speech")
    assert "\n" not in str(deep.value) + str(none.value)
