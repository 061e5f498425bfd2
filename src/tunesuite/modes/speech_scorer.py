"""Zero-shot for speech: keyword spotting by a speech sequence-to-sequence model's (Whisper's) decoder likelihood.

The audio task loads a Whisper checkpoint as its encoder plus a random head; the decoder that can read the audio is
in the same checkpoint. This scorer carries that decoder (saved with the run under "scorer.decoder.*"), and scores
each class's text as a transcript of the clip: the mean log-probability per token of the text and the end token,
after the prefix `generate` starts with (start; language and task on a multilingual model; no timestamps). Each
clip is encoded once; the decoder reads every class's text in one batch against it.

Mean, not sum: a sum favours short texts (each token costs log-probability). On spoken keywords (one or two
tokens each) the two tied (docs/zero-few-shot.md), so the choice rests on that argument.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunesuite.errors import TunesuiteError
from tunesuite.modes.whisper_start import language_token, start_tokens

KIND = "decoder"


def is_speech_seq2seq(config: Any) -> bool:
    """Whether the checkpoint's config has a speech sequence-to-sequence model (encoder + text decoder)."""
    from transformers import AutoModelForSpeechSeq2Seq

    return type(config) in AutoModelForSpeechSeq2Seq._model_mapping


def prefix(generation: Any) -> list[int]:
    """The decoder's first tokens, as `generate` starts (whisper_start): on a multilingual model in the generation
    config's language, else English."""
    language = str(getattr(generation, "language", None) or "en").strip("<|>")
    multilingual = getattr(generation, "is_multilingual", False) and getattr(generation, "lang_to_id", None)
    if multilingual and language_token(language) not in generation.lang_to_id:
        raise TunesuiteError(f"--mode zero-shot: the checkpoint's generation config names language {language!r}, "
                             "which its lang_to_id lacks; set generation_config.language to one it has")
    return start_tokens(generation, language)


class DecoderScorer(nn.Module):
    """(encoder states of a batch of clips) -> mean log-probability of each class's text. No trainable parameter."""

    def __init__(self, settings: dict[str, Any], decoder: nn.Module, output: nn.Module | None = None):
        super().__init__()
        self.settings = settings
        self.decoder = decoder.requires_grad_(False)
        self.output = output.requires_grad_(False) if output is not None else None  # None: tied to the embeddings

    def _batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder inputs after the prefix (each text but its last token), targets (the text) and their mask, a row
        per class."""
        texts, pad = self.settings["texts"], self.settings["pad_token_id"]
        width = max(len(t) for t in texts)
        inputs = torch.full((len(texts), width - 1), pad, dtype=torch.long)
        targets, mask = torch.full((len(texts), width), pad, dtype=torch.long), torch.zeros(len(texts), width)
        for i, text in enumerate(texts):
            inputs[i, : len(text) - 1] = torch.tensor(text[:-1])
            targets[i, : len(text)], mask[i, : len(text)] = torch.tensor(text), 1
        return inputs.to(device), targets.to(device), mask.to(device)

    def token_log_probs(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(clips, classes, tokens) log-probabilities of each class text's tokens, and the (classes, tokens) mask of
        the real ones. Per clip, the decoder reads the prefix once (its cache, cross-attention's keys and values of
        the audio included, then shared by every class) and every class's text in one batch after it."""
        inputs, targets, mask = self._batch(encoded.device)
        start = torch.tensor([self.settings["prefix"]], device=encoded.device)
        weight, found = (self.output or self.decoder.embed_tokens).weight, []
        for states in encoded:
            first = self.decoder(input_ids=start, encoder_hidden_states=states[None], use_cache=True)
            cache = first.past_key_values
            cache.batch_repeat_interleave(len(inputs))
            rest = self.decoder(input_ids=inputs, encoder_hidden_states=states.expand(len(inputs), *states.shape),
                                past_key_values=cache, use_cache=True).last_hidden_state
            hidden = torch.cat([first.last_hidden_state[:, -1:].expand(len(inputs), 1, -1), rest], dim=1)
            logits = F.linear(hidden, weight, getattr(self.output, "bias", None)).float()
            found.append(logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask)
        return torch.stack(found), mask

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        scores, mask = self.token_log_probs(encoded)
        total = scores.sum(-1)
        return total if self.settings.get("normalise") == "sum" else total / mask.sum(-1)


def _scored_forward(self: nn.Module, input_features: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                    **kwargs: Any) -> Any:
    """The audio classifier's forward with the scorer as its head: the encoder's states go to the decoder."""
    from transformers.modeling_outputs import SequenceClassifierOutput

    logits = self.scorer(self.get_encoder()(input_features).last_hidden_state)
    loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
    return SequenceClassifierOutput(loss=loss, logits=logits)


def _parts(full: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """(decoder, output layer or None when it is tied to the decoder's token embeddings) of a seq2seq model."""
    decoder, output = full.get_decoder(), full.get_output_embeddings()
    return decoder, None if output.weight is decoder.embed_tokens.weight else output


def scorer_from(model_path: str, settings: dict[str, Any]) -> tuple[DecoderScorer, Any]:
    """A scorer carrying the checkpoint's decoder, and its tokenizer (to set the classes' texts)."""
    from transformers import AutoModelForSpeechSeq2Seq, AutoTokenizer

    full = AutoModelForSpeechSeq2Seq.from_pretrained(model_path)
    decoder, output = _parts(full)
    settings.update({"kind": KIND, "prefix": prefix(full.generation_config), "tied": output is None,
                     "end_token_id": full.generation_config.eos_token_id,
                     "pad_token_id": full.generation_config.pad_token_id or full.generation_config.eos_token_id,
                     "max_length": full.config.max_target_positions, "normalise": "mean"})
    return DecoderScorer(settings, decoder, output), AutoTokenizer.from_pretrained(model_path)


def empty(config: Any, settings: dict[str, Any]) -> DecoderScorer:
    """A scorer shaped for `config`, to load a saved run's decoder into."""
    from transformers import AutoModelForSpeechSeq2Seq

    decoder, output = _parts(AutoModelForSpeechSeq2Seq.from_config(config))
    return DecoderScorer(settings, decoder, None if settings.get("tied", True) else output)


def set_texts(scorer: DecoderScorer, tokenizer: Any, texts: list[str]) -> None:
    """Each class's text as transcript tokens (a leading space, as Whisper writes them) followed by the end token."""
    end = scorer.settings["end_token_id"]
    end = end[0] if isinstance(end, list) else end
    tokens = [tokenizer(" " + text.lstrip(), add_special_tokens=False)["input_ids"] + [end] for text in texts]
    room = scorer.settings["max_length"] - len(scorer.settings["prefix"])
    long = [t for t, ids in zip(texts, tokens, strict=True) if len(ids) > room]
    if long:
        raise TunesuiteError(f"--label-prompt: the class text {long[0]!r} is longer than the decoder's "
                             f"{room} tokens; shorten --label-prompt or --label-words")
    if len(set(map(tuple, tokens))) < len(tokens):
        raise TunesuiteError("--mode zero-shot: two classes have the same text; give them distinct --label-words")
    scorer.settings["texts"] = tokens
