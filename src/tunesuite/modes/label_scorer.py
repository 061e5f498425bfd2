"""The head of the modes that train nothing: classes scored by a frozen model, as an nn.Module on the model.

Two ways to score: `embedding` (each class is a unit vector: a prompt's embedding, or the centroid of a few
examples; the score is the cosine with the input's embedding, pooled as the encoder was trained) and `cloze` (a
masked LM fills a pattern appended to the input; each class is a label word, scored by the LM head at the mask).
Few-shot may instead keep every example (`knn`): the input's k nearest examples by cosine vote for their classes.
Speech (Whisper's decoder) and image-text (CLIP's towers) scorers live in their own modules; attach and restore
here serve every kind.

Contract, as for our own prompts: the scorer is attached as `model.scorer` (its weights are saved with the model
under "scorer."), the model's forward is replaced by one that asks it for the logits, and the settings go into
`model.config.tunesuite_scorer`; `restore` re-attaches and reloads, so load, predict and export take the usual path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunesuite.errors import TunesuiteError
from tunesuite.modes import extra_weights

CONFIG_KEY = "tunesuite_scorer"
SCALE = 20.0  # cosine -> logit: softmax over classes at the temperature sentence encoders are trained with
POOLINGS = ("mean", "cls", "max")


class LabelScorer(nn.Module):
    """(frozen backbone, batch) -> one logit per class. Holds no trainable parameter."""

    def __init__(self, settings: dict[str, Any], hidden: int, head: nn.Module | None = None):
        super().__init__()
        self.settings = settings
        classes = settings["num_classes"]
        self.classes = nn.Parameter(torch.zeros(classes, hidden), requires_grad=False)  # embedding: unit rows
        self.head = head  # cloze: the masked LM's head (hidden -> vocabulary)
        if head is not None:
            head.requires_grad_(False)
        if settings.get("neighbours"):  # knn: every example's unit embedding and its class
            self.examples = nn.Parameter(torch.zeros(settings["examples"], hidden), requires_grad=False)
            self.register_buffer("example_labels", torch.zeros(settings["examples"], dtype=torch.long))

    def embed(self, base: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Unit-length pooled embeddings, pooled the way the encoder was trained."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = base(**inputs).last_hidden_state.float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooling = self.settings.get("pooling", "mean")
        if pooling == "cls":
            pooled = hidden[:, 0]
        elif pooling == "max":
            pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1)
        else:
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(pooled, dim=-1)

    def forward(self, base: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.settings["kind"] == "cloze":
            return self._cloze(base, input_ids, attention_mask)
        embedded = self.embed(base, input_ids, attention_mask, token_type_ids)
        if self.settings.get("neighbours"):
            return self._vote(embedded)
        return self.settings.get("scale", SCALE) * embedded @ self.classes.float().T

    def _vote(self, embedded: torch.Tensor) -> torch.Tensor:
        """k nearest examples by cosine, each voting for its class with weight exp(SCALE x cosine): the logits are
        the log of each class's share of the vote (a little smoothing, so a class without a neighbour is unlikely,
        not impossible)."""
        with torch.autocast(embedded.device.type, enabled=False):  # the neighbours' order in full precision
            similar = embedded.float() @ self.examples.float().T
        top, at = similar.topk(min(self.settings["neighbours"], similar.shape[1]), dim=1)
        weights = torch.exp(self.settings.get("scale", SCALE) * (top - top[:, :1]))
        votes = torch.zeros(len(embedded), self.settings["num_classes"], device=embedded.device)
        votes.scatter_add_(1, self.example_labels[at], weights)
        return torch.log((votes + 1e-3) / (votes.sum(1, keepdim=True) + 1e-3 * votes.shape[1]))

    def _cloze(self, base: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ids, mask = with_pattern(input_ids, attention_mask, self.settings["pattern_ids"],
                                 self.settings["pad_token_id"], self.settings["max_length"])
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
        at = (ids == self.settings["mask_token_id"]).int().argmax(1)
        return self.head(hidden[torch.arange(len(ids), device=ids.device), at].unsqueeze(1))[:, 0].float()


def with_pattern(input_ids: torch.Tensor, attention_mask: torch.Tensor, pattern: list[int], pad: int,
                 max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's tokens with the pattern (holding the mask token) inserted before its closing special token; the
    text is cut, never the pattern, when the row would outgrow the model's positions."""
    tail = torch.tensor(pattern, dtype=input_ids.dtype, device=input_ids.device)
    rows = []
    for ids, mask in zip(input_ids, attention_mask, strict=True):
        length = int(mask.sum())
        text = ids[: length - 1][: max(1, max_length - len(pattern) - 1)]
        rows.append(torch.cat([text, tail, ids[length - 1 : length]]))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=input_ids.dtype, device=input_ids.device)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


def _scored_forward(self: nn.Module, input_ids: torch.Tensor | None = None,
                    attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                    labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
    """The classifier's forward with the scorer as its head (the model's own head is left as it was, unused)."""
    from transformers.modeling_outputs import SequenceClassifierOutput

    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    logits = self.scorer(self.base_model, input_ids, attention_mask, token_type_ids)
    loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
    return SequenceClassifierOutput(loss=loss, logits=logits)


def attach(model: nn.Module, settings: dict[str, Any], head: nn.Module | None = None,
           scorer: nn.Module | None = None) -> nn.Module:
    """Put a scorer on `model` (its settings recorded in the config) and route the forward pass through it: a text
    LabelScorer, or `scorer`, of a kind whose module (`other_kind`) has the forward pass."""
    other = other_kind(settings["kind"])
    model.scorer = scorer if scorer is not None else LabelScorer(settings, model.config.hidden_size, head)
    model.forward = types.MethodType(_scored_forward if other is None else other._scored_forward, model)
    setattr(model.config, CONFIG_KEY, settings)
    return model.scorer


def other_kind(kind: str) -> types.ModuleType | None:
    """The module of a scorer kind for audio or images (its KIND, scorer, forward pass, `empty`); None: text."""
    from tunesuite.modes import image_text_scorer, speech_scorer

    return {module.KIND: module for module in (speech_scorer, image_text_scorer)}.get(kind)


def attach_for_media(model: nn.Module, model_path: str) -> nn.Module:
    """A zero-shot scorer for a model that reads no text: Whisper's decoder for a speech seq2seq checkpoint, the
    text tower for a dual image-text encoder; else one error line naming what would work. What sets the classes
    up (tokenizer, text tower) waits on the scorer as `setup` until `set_media_classes`."""
    from tunesuite.modes import image_text_scorer, speech_scorer

    settings: dict[str, Any] = {"num_classes": model.config.num_labels}
    if speech_scorer.is_speech_seq2seq(model.config) and hasattr(model, "get_encoder"):
        scorer, tokenizer = speech_scorer.scorer_from(model_path, settings)
        scorer.setup = (tokenizer, None)
    elif hasattr(model, "vision_model") and (full := image_text_scorer.dual_encoder(model_path)) is not None:
        from transformers import AutoTokenizer

        scorer = image_text_scorer.scorer_from(full, settings)
        scorer.setup = (AutoTokenizer.from_pretrained(model_path), full)
    else:
        raise TunesuiteError(
            f"--mode zero-shot: {model_path} ({type(model).__name__}) has no text side to describe the classes with; "
            "use a speech sequence-to-sequence checkpoint for audio (Whisper, e.g. openai/whisper-tiny.en), a dual "
            "image-text encoder for images (CLIP, e.g. openai/clip-vit-base-patch32), or a training mode (lora)")
    return attach(model, settings, scorer=scorer)


def set_media_classes(model: nn.Module, texts: list[str]) -> None:
    """The classes of an audio or image scorer from their texts; what set them up is dropped."""
    scorer = model.scorer
    tokenizer, full = scorer.setup
    if full is None:
        other_kind(scorer.settings["kind"]).set_texts(scorer, tokenizer, texts)
    else:
        other_kind(scorer.settings["kind"]).set_prompts(scorer, full, tokenizer, texts)
    del scorer.setup
    setattr(model.config, CONFIG_KEY, scorer.settings)


def mlm_head(config: Any, path: str | None = None) -> tuple[nn.Module, str]:
    """The masked-LM head of the checkpoint at `path` (its weights), or a fresh one for `config` (to load into):
    (head, its attribute name in the *ForMaskedLM model)."""
    from transformers import AutoModelForMaskedLM

    mlm = AutoModelForMaskedLM.from_pretrained(path) if path else AutoModelForMaskedLM.from_config(config)
    heads = [(name, child) for name, child in mlm.named_children()
             if name != mlm.base_model_prefix and any(True for _ in child.parameters())]
    if len(heads) != 1:
        raise TunesuiteError(f"--mode zero-shot: the masked LM {type(mlm).__name__} has no single head module "
                             f"({', '.join(n for n, _ in heads) or 'none'}); use --zero-shot-scorer embedding")
    return heads[0][1], heads[0][0]


def keep_words(head: nn.Module, vocab_size: int, word_ids: list[int] | int) -> nn.Module:
    """The masked-LM head cut down to the label words: its vocabulary layer keeps only their rows (in class order),
    so it gives one logit per class, shares no tensor with the embeddings, and saves small. An int: that many
    empty rows, to load saved ones into."""
    modules = dict(head.named_modules())
    found = [name for name, m in modules.items() if isinstance(m, nn.Linear) and m.out_features == vocab_size]
    if len(found) != 1:
        raise TunesuiteError(f"--mode zero-shot: found {len(found)} vocabulary layers in the masked LM's head "
                             "(expected one); use --zero-shot-scorer embedding")
    parent, _, attr = found[0].rpartition(".")
    old = modules[found[0]]
    rows = word_ids if isinstance(word_ids, list) else None
    new = nn.Linear(old.in_features, len(rows) if rows is not None else word_ids, bias=old.bias is not None)
    with torch.no_grad():
        if rows is not None:
            new.weight.copy_(old.weight[rows])
            if old.bias is not None:
                new.bias.copy_(old.bias[rows])
    setattr(modules[parent], attr, new.to(old.weight.device))
    return head.requires_grad_(False)


def scorer_weights_expected(auto_model: Any, path: str | Path) -> contextlib.AbstractContextManager[None]:
    """While loading a run saved with a scorer: its `scorer.*` weights are expected (restore loads them)."""
    return extra_weights.expected(auto_model, path, CONFIG_KEY, r"^scorer\.")


def restore(model: nn.Module, out_dir: str | Path) -> nn.Module:
    """Re-attach the scorer recorded in a saved config and load its weights."""
    settings = getattr(model.config, CONFIG_KEY, None)
    if not settings:
        return model
    from safetensors.torch import load_file

    head, other = None, other_kind(settings["kind"])
    if settings["kind"] == "cloze":
        head = keep_words(mlm_head(model.config)[0], model.config.vocab_size, settings["num_classes"])
    scorer = attach(model, settings, head, other.empty(model.config, settings) if other else None)
    weights = {}
    for file in sorted(Path(out_dir).glob("model*.safetensors")):
        weights.update({k[len("scorer."):]: v for k, v in load_file(file).items() if k.startswith("scorer.")})
    missing = set(scorer.state_dict()) - set(weights)
    if missing:
        raise TunesuiteError(f"{out_dir}: saved model lacks scorer weights {sorted(missing)[:3]}")
    scorer.load_state_dict(weights)
    return model.to(next(model.parameters()).device)


def sentence_pooling(model_path: str) -> str | None:
    """How a sentence-transformers checkpoint pools (its Pooling module's config), or None: not one."""
    from transformers.utils import cached_file

    def read(name: str) -> Any:
        try:
            found = cached_file(model_path, name, _raise_exceptions_for_missing_entries=False)
        except (OSError, ValueError):
            return None
        return json.loads(Path(found).read_text()) if found else None

    modules = read("modules.json") or []
    folder = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")), "1_Pooling")
    pooling = read(f"{folder}/config.json")
    if pooling is None:
        return "mean" if modules or read("sentence_bert_config.json") else None
    for name in POOLINGS:
        if pooling.get(f"pooling_mode_{name}_tokens") or pooling.get(f"pooling_mode_{name}_token"):
            return name
    return "mean"


def weights_hash(model: nn.Module) -> str:
    """sha256 of every weight but the scorer's: equal before and after a run that trains nothing."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith("scorer."):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
