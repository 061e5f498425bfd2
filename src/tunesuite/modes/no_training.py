"""Modes that update no weight: `zero-shot` (each class described by a prompt) and `few-shot` (each class the
centroid of K examples' frozen embeddings). The run still evaluates, saves, reports and loads like any other: the
classes live in a scorer on the model (label_scorer.py), set up from the data instead of trained.

The mechanism follows what the checkpoint is: a sentence encoder (sentence-transformers files in its folder) is
scored by cosine similarity, pooled as it was trained; a masked LM (`*ForMaskedLM`) by pattern + verbalizer; a
speech sequence-to-sequence model (Whisper) by its decoder's likelihood of each class's text (speech_scorer.py); a
dual image-text encoder (CLIP) by cosine with the text tower's embedding of each prompt (image_text_scorer.py).
Few-shot keeps class centroids, or every example for a k-nearest-neighbour vote (`--few-shot-scorer knn`).
"""

from __future__ import annotations

import inspect
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesuite.errors import TunesuiteError
from tunesuite.registry import ModeContext, Prepared, register_mode

if TYPE_CHECKING:  # torch only where a model is at hand: `tunesuite modes` and --help register the modes without it
    import torch
    from torch import nn

log = logging.getLogger("tunesuite")
SINGLE_LABEL = "single_label_classification"
SCORERS = ("auto", "embedding", "cloze")
FEW_SHOT_SCORERS = ("centroid", "knn")
# --label-prompt when none is given, by what reads it: text is described, speech transcribed, images captioned
TEXT_PROMPT, SPEECH_PROMPT, IMAGE_PROMPT = "This text is about {label}.", "{label}", "a photo of a {label}."
MEDIA_PROMPTS = {"decoder": SPEECH_PROMPT, "image-text": IMAGE_PROMPT}  # by scorer kind (speech_scorer.KIND, ...)


@dataclass
class ZeroShotArgs:
    _argument_group_name = "mode zero-shot"
    label_prompt: str | None = field(
        default=None,
        metadata={"help": "How each class is described; {label} becomes its name (or its --label-words entry). "
                          "A masked LM reads it after the input, {label} masked. Default: "
                          f"'{TEXT_PROMPT}' for text, '{SPEECH_PROMPT}' (the transcript Whisper's decoder scores) "
                          f"for speech, '{IMAGE_PROMPT}' for a CLIP-style image-text model."})
    label_words: str | None = field(
        default=None, metadata={"help": "A YAML file mapping each class name to the words put in for {label}."})
    zero_shot_scorer: str = field(
        default="auto", metadata={"help": "embedding (cosine of pooled embeddings), cloze (a masked LM's word at "
                                          "the mask), or auto: from the checkpoint.", "choices": list(SCORERS)})


@dataclass
class FewShotArgs:
    _argument_group_name = "mode few-shot"
    shots: int = field(default=8, metadata={"help": "Training examples per class (seeded draw) whose embeddings "
                                                    "make the class centroid; -1: every one."})
    few_shot_scorer: str = field(
        default="centroid", metadata={"help": "centroid: each class the mean of its examples' embeddings; knn: the "
                                              "--neighbours nearest examples vote (by cosine, weighted by similarity).",
                                      "choices": list(FEW_SHOT_SCORERS)})
    neighbours: int = field(default=5, metadata={"help": "How many nearest examples vote (--few-shot-scorer knn)."})


def _check_text_model(model: nn.Module, mode: str) -> None:
    if "input_ids" not in inspect.signature(model.forward).parameters:
        raise TunesuiteError(f"--mode {mode} scores text for now: {type(model).__name__} takes no input_ids; "
                             "use a text classification model, or a training mode (frozen, lora)")


def _mechanism(model_path: str, wanted: str, config: Any) -> tuple[str, str | None]:
    """(scorer kind, pooling) for the checkpoint, or one error line naming what would work."""
    from tunesuite.modes import label_scorer

    pooling = label_scorer.sentence_pooling(model_path)
    masked = any(a.endswith("ForMaskedLM") for a in getattr(config, "architectures", None) or [])
    if wanted == "embedding" or (wanted == "auto" and pooling):
        return "embedding", pooling or "mean"
    if wanted == "cloze" or (wanted == "auto" and masked):
        return "cloze", None
    raise TunesuiteError(
        f"--mode zero-shot: {model_path} is neither a sentence encoder (no sentence-transformers modules.json or "
        f"1_Pooling/config.json) nor a masked language model (architectures: "
        f"{', '.join(getattr(config, 'architectures', None) or ['none'])}); use a sentence-transformers checkpoint "
        "(e.g. sentence-transformers/all-MiniLM-L6-v2), a *ForMaskedLM checkpoint, or --zero-shot-scorer embedding "
        "to score its mean-pooled embeddings anyway")


def _frozen(model: nn.Module) -> nn.Module:
    model.requires_grad_(False)
    return model


def _zero_shot_apply(model: nn.Module, ctx: ModeContext) -> nn.Module:
    from tunesuite.modes import label_scorer

    if "input_ids" not in inspect.signature(model.forward).parameters:  # audio, images: a text side in the checkpoint
        label_scorer.attach_for_media(model, ctx.model_path)
        return _frozen(model)
    kind, pooling = _mechanism(ctx.model_path, ctx.args.zero_shot_scorer, model.config)
    head, head_name = label_scorer.mlm_head(model.config, ctx.model_path) if kind == "cloze" else (None, None)
    label_scorer.attach(model, {"kind": kind, "pooling": pooling, "head": head_name,
                                "num_classes": model.config.num_labels}, head)
    return _frozen(model)


def _few_shot_apply(model: nn.Module, ctx: ModeContext) -> nn.Module:
    return _frozen(attach_embedding_scorer(model, ctx, "few-shot"))


def attach_embedding_scorer(model: nn.Module, ctx: ModeContext, mode: str) -> nn.Module:
    """The scorer that classes come to from examples' embeddings (few-shot, setfit), after checking the text
    model and --neighbours."""
    from tunesuite.modes import label_scorer

    _check_text_model(model, mode)
    if ctx.args.few_shot_scorer == "knn" and ctx.args.neighbours < 1:
        raise TunesuiteError(f"--neighbours {ctx.args.neighbours}: give 1 or more (how many nearest examples vote)")
    label_scorer.attach(model, {"kind": "embedding", "pooling": label_scorer.sentence_pooling(ctx.model_path) or
                                "mean", "num_classes": model.config.num_labels})
    return model


def _check_single_label(prepared: Prepared, mode: str) -> list[str]:
    if prepared.problem_type != SINGLE_LABEL or not prepared.label_names:
        raise TunesuiteError(f"--mode {mode} needs single-label classes; this data is {prepared.problem_type} "
                             "(use a training mode)")
    return prepared.label_names


def label_words(path: str | None, names: list[str]) -> list[str]:
    """The words for each class: from the --label-words YAML map, else the class name (dashes and underscores as
    spaces)."""
    if path is None:
        return [name.replace("_", " ").replace("-", " ") for name in names]
    import yaml

    try:
        mapping = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TunesuiteError(f"--label-words {path}: cannot read it ({str(e).splitlines()[0]})") from None
    if not isinstance(mapping, dict):
        raise TunesuiteError(f"--label-words {path}: expected a map of class name -> words")
    missing = [n for n in names if n not in mapping]
    if missing:
        raise TunesuiteError(f"--label-words {path}: no words for {', '.join(map(repr, missing[:5]))}; add a line "
                             "per class")
    return [str(mapping[n]) for n in names]


def _embed_texts(model: nn.Module, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    import torch

    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(model.device)
    with torch.no_grad():
        return model.scorer.embed(model.base_model, batch["input_ids"], batch["attention_mask"],
                                  batch.get("token_type_ids"))


def embed_rows(model: nn.Module, tokenizer: Any, rows: Any, batch_size: int = 32) -> torch.Tensor:
    import torch

    keep = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in rows.column_names]
    found = []
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        batch = tokenizer.pad({c: part[c] for c in keep}, return_tensors="pt").to(model.device)
        with torch.no_grad():
            found.append(model.scorer.embed(model.base_model, batch["input_ids"], batch["attention_mask"],
                                            batch.get("token_type_ids")))
    return torch.cat(found)


def _zero_shot_fit(model: nn.Module, prepared: Prepared, args: ZeroShotArgs, seed: int) -> dict[str, Any]:
    from tunesuite.modes import label_scorer

    names, tokenizer = _check_single_label(prepared, "zero-shot"), prepared.processor
    words, scorer = label_words(args.label_words, names), model.scorer
    kind = scorer.settings["kind"]
    media = label_scorer.other_kind(kind)
    prompt = args.label_prompt or MEDIA_PROMPTS.get(kind, TEXT_PROMPT)
    if "{label}" not in prompt:
        raise TunesuiteError(f"--label-prompt {prompt!r} has no {{label}}: put it where the class goes")
    model.eval()
    if media is not None:
        texts = [prompt.replace("{label}", w) for w in words]
        label_scorer.set_media_classes(model, texts)
        log.info("zero-shot (%s): %d class texts, e.g. %r", kind, len(texts), texts[0])
        return {}
    if scorer.settings["kind"] == "embedding":
        prompts = [prompt.replace("{label}", w) for w in words]
        scorer.classes.copy_(_embed_texts(model, tokenizer, prompts).to(scorer.classes.dtype))
        log.info("zero-shot: %d class prompts, e.g. %r", len(prompts), prompts[0])
        return {}
    if tokenizer.mask_token is None:
        raise TunesuiteError("--zero-shot-scorer cloze: the tokenizer has no mask token; use --zero-shot-scorer "
                             "embedding")
    space = " " if " {label}" in prompt else ""
    pattern = space + prompt.replace("{label}", tokenizer.mask_token)
    first = [tokenizer(space + w, add_special_tokens=False)["input_ids"][0] for w in words]
    clash = [(a, b) for i, a in enumerate(names) for j, b in enumerate(names) if i < j and first[i] == first[j]]
    if clash:
        raise TunesuiteError(f"--mode zero-shot: classes {clash[0][0]!r} and {clash[0][1]!r} start with the same "
                             "word piece; give them distinct words with --label-words")
    scorer.settings.update({
        "pattern_ids": tokenizer(pattern, add_special_tokens=False)["input_ids"], "word_ids": first,
        "mask_token_id": tokenizer.mask_token_id, "pad_token_id": tokenizer.pad_token_id or 0,
        "max_length": int(getattr(model.config, "max_position_embeddings", 512))})
    label_scorer.keep_words(scorer.head, model.config.vocab_size, first)
    model.config.tunesuite_scorer = scorer.settings
    log.info("zero-shot cloze: pattern %r, label words %s", pattern,
             ", ".join(tokenizer.convert_ids_to_tokens(first)))
    return {}


def draw_shots(prepared: Prepared, shots: int, seed: int, mode: str) -> list[tuple[int, int]]:
    """(class, train row) for `shots` rows per class (-1: every row), drawn with `seed`: the same draw for every
    mode that learns from K examples per class, so their results compare at the same K."""
    names = _check_single_label(prepared, mode)
    if prepared.train is None:
        raise TunesuiteError(f"--mode {mode} draws its examples from the train split; give the data one")
    if shots == 0 or shots < -1:
        raise TunesuiteError(f"--shots {shots}: give examples per class (1 or more, -1 for all); for none, "
                             "--mode zero-shot")
    labels = list(prepared.train["labels"])
    rng, chosen = random.Random(seed), []
    for k, name in enumerate(names):
        rows = [i for i, label in enumerate(labels) if label == k]
        if not rows:
            raise TunesuiteError(f"--mode {mode}: the train split has no example of class {name!r}")
        chosen += [(k, i) for i in (rows if shots == -1 else rng.sample(rows, min(shots, len(rows))))]
    return chosen


def _few_shot_fit(model: nn.Module, prepared: Prepared, args: FewShotArgs, seed: int) -> dict[str, Any]:
    chosen = draw_shots(prepared, args.shots, seed, "few-shot")
    model.eval()
    set_classes(model, prepared, chosen, args)
    per_class = "all" if args.shots == -1 else args.shots
    if args.few_shot_scorer == "knn":
        log.info("few-shot: %d training examples kept, the %d nearest vote (%s per class)", len(chosen),
                 args.neighbours, per_class)
    else:
        log.info("few-shot: class centroids of %d training examples (%s per class)", len(chosen), per_class)
    return {"shots_per_class": args.shots, "shots_used": len(chosen)}


def set_classes(model: nn.Module, prepared: Prepared, chosen: list[tuple[int, int]], args: FewShotArgs) -> None:
    """The scorer's classes from the drawn (class, train row) examples' embeddings, as --few-shot-scorer says:
    their centroids, or the examples themselves for the k nearest to vote."""
    import torch

    embedded = embed_rows(model, prepared.processor, prepared.train.select([i for _, i in chosen]))
    which = torch.tensor([k for k, _ in chosen], device=embedded.device)
    if args.few_shot_scorer == "knn":
        _keep_examples(model, embedded, which, args.neighbours)
    else:
        set_centroids(model, embedded, which)


def set_centroids(model: nn.Module, embedded: torch.Tensor, which: torch.Tensor) -> None:
    """Each class's unit-length mean of its examples' embeddings, as the scorer's class rows."""
    import torch

    centroids = torch.stack([embedded[which == k].mean(0) for k in range(len(model.scorer.classes))])
    model.scorer.classes.copy_(torch.nn.functional.normalize(centroids, dim=-1).to(model.scorer.classes.dtype))


def _keep_examples(model: nn.Module, embedded: torch.Tensor, which: torch.Tensor, neighbours: int) -> None:
    """The k-nearest-neighbour scorer: every drawn example's unit embedding and class, kept on the scorer (its
    size recorded in the settings, so a finished run loads them back)."""
    from torch import nn

    scorer = model.scorer
    scorer.settings.update({"neighbours": neighbours, "examples": len(embedded)})
    scorer.examples = nn.Parameter(embedded.detach().to(scorer.classes.dtype), requires_grad=False)
    scorer.register_buffer("example_labels", which.long())
    model.config.tunesuite_scorer = scorer.settings


def _text_only(family: Any) -> str:
    return "ok (text)" if family.modality in ("", "text") else "refused: text models only for now"


def _zero_shot_on(family: Any) -> str:
    """Zero-shot needs a text side: a speech or image checkpoint has one only as a seq2seq decoder or a text tower."""
    if family.modality in ("", "text"):
        return "ok (text)"
    return "only a checkpoint with a text side: a speech seq2seq decoder (Whisper), a text tower (CLIP-style)"


register_mode("zero-shot",
              help="nothing: each class is a prompt the frozen model scores (cosine, cloze, Whisper likelihood, CLIP)",
              learning_rate=0.0, args=ZeroShotArgs, trains_nothing=_zero_shot_fit, compared=False,
              on_family=_zero_shot_on)(_zero_shot_apply)
register_mode("few-shot", help="nothing: each class is the centroid (or k-NN) of --shots examples' frozen embeddings",
              learning_rate=0.0, args=FewShotArgs, trains_nothing=_few_shot_fit, compared=False,
              on_family=_text_only)(_few_shot_apply)
