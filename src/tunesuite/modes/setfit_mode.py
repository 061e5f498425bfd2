"""`--mode setfit`: few-shot text classification that does update the encoder, the SetFit way. The same seeded
draw of K examples per class as few-shot; the setfit library (the one made for this job) fine-tunes the encoder
body contrastively on pairs of them; the trained body's weights go back into the run's model, and each class
becomes the centroid of its examples' new embeddings (few-shot's scorer, so the run saves, loads, predicts and
exports as a few-shot run does).

setfit is an optional extra (`pip install -e '.[setfit]'`), imported only when a run fits.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunesuite.errors import TunesuiteError
from tunesuite.modes import no_training
from tunesuite.registry import ModeContext, Prepared, register_mode

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger("tunesuite")
INSTALL = "pip install -e '.[setfit]'"


@dataclass
class SetFitArgs(no_training.FewShotArgs):
    """few-shot's flags (--shots and its scorer: the same draw) and setfit's own."""

    _argument_group_name = "mode setfit"
    setfit_iterations: int = field(
        default=20, metadata={"help": "setfit's num_iterations: contrastive pairs drawn per example (its usual 20)."})
    setfit_batch_size: int = field(default=16, metadata={"help": "Pairs per step while setfit trains the body."})


def _apply(model: nn.Module, ctx: ModeContext) -> nn.Module:
    """The few-shot scorer on the model; the encoder body trains (in setfit), the scorer's classes do not."""
    no_training.attach_embedding_scorer(model, ctx, "setfit")
    model.requires_grad_(False)
    model.base_model.requires_grad_(True)
    return model


def _texts(tokenizer: Any, rows: Any) -> list[str]:
    """The drawn rows' text, decoded from their tokens (the split holds tokens only); unknown tokens are kept, so
    setfit's tokenizer reads the same ids back."""
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    return [tokenizer.decode([i for i in ids if i not in special]) for ids in rows["input_ids"]]


def _sentence_transformer(model: nn.Module, tokenizer: Any, folder: str, max_length: int) -> Any:
    """A SentenceTransformer over the run's encoder body (a copy, saved to `folder`), pooled as the scorer pools."""
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 6 moved its modules
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer

    model.base_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    body = Transformer(folder, max_seq_length=max_length)
    pooling = Pooling(model.config.hidden_size, pooling_mode=model.scorer.settings["pooling"])
    return SentenceTransformer(modules=[body, pooling], device=str(model.device))


def _fit(model: nn.Module, prepared: Prepared, args: SetFitArgs, seed: int) -> dict[str, Any]:
    """setfit trains a copy of the body on the drawn examples (and its own logistic head, which we leave: the
    scorer's classes are centroids); the body's weights are copied back, then the classes are set."""

    try:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise TunesuiteError(f"--mode setfit needs the setfit package: {INSTALL}") from None
    if args.setfit_iterations < 1 or args.setfit_batch_size < 1:
        raise TunesuiteError(f"--setfit-iterations {args.setfit_iterations} --setfit-batch-size "
                             f"{args.setfit_batch_size}: give 1 or more")
    chosen = no_training.draw_shots(prepared, args.shots, seed, "setfit")
    rows = prepared.train.select([i for _, i in chosen])
    texts = _texts(prepared.processor, rows)
    with tempfile.TemporaryDirectory(prefix="tunesuite-setfit-") as folder:
        body = _sentence_transformer(model, prepared.processor, folder,
                                     max(len(ids) for ids in rows["input_ids"]))
        trainer = Trainer(
            model=SetFitModel(model_body=body, model_head=LogisticRegression()), train_dataset=Dataset.from_dict(
                {"text": texts, "label": [k for k, _ in chosen]}),
            args=TrainingArguments(output_dir=f"{folder}/setfit", batch_size=args.setfit_batch_size, num_epochs=1,
                                   num_iterations=args.setfit_iterations, seed=seed, show_progress_bar=False,
                                   report_to="none", save_strategy="no", logging_strategy="no"))
        trainer.train()
        trained = body[0].auto_model.state_dict()
        model.base_model.load_state_dict({k: v.to(model.device) for k, v in trained.items()})
    model.eval()
    no_training.set_classes(model, prepared, chosen, args)  # few-shot's classes, on the new embeddings
    log.info("setfit: the body trained on pairs of %d examples (%s per class, %d iterations); classes: %s of their "
             "new embeddings", len(chosen), "all" if args.shots == -1 else args.shots, args.setfit_iterations,
             args.few_shot_scorer)
    return {"shots_per_class": args.shots, "shots_used": len(chosen)}


register_mode("setfit", help="the encoder body, contrastively on --shots examples per class through setfit; classes "
                             "are the centroids of their new embeddings (extra: setfit)",
              learning_rate=2e-5, args=SetFitArgs, fits=_fit, compared=False,
              on_family=no_training._text_only)(_apply)
