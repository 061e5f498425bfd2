"""The Trainer subclass and callbacks the wrapper adds: dataset-order evaluation, freeze-then-unfreeze, exact
resume, atomic writes; and the classification loss a run trains with: the model's own, or class-weighted when
the run sets weights.

The weights live in the model config (`tunesuite_class_weights`, so config.json records them and a finished
run evaluates with the same loss); the Trainer subclass and the feature-cache head both compute it here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_callback import ExportableState
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PredictionOutput

from tunesuite.errors import TunesuiteError
from tunesuite.files import write_bytes_atomic
from tunesuite.train.checkpoints import epoch_end_pending, unfit_message

CLASS_WEIGHTS = "tunesuite_class_weights"


def class_weights(config: Any) -> list[float] | None:
    return getattr(config, CLASS_WEIGHTS, None) or None


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: Any) -> torch.Tensor:
    """Cross-entropy (single label), binary cross-entropy per class (multi-label) or MSE (regression), with the
    config's class weights when it has them."""
    weights = class_weights(config)
    weight = None if weights is None else torch.tensor(weights, dtype=logits.dtype, device=logits.device)
    if config.problem_type == "regression":
        return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    if config.problem_type == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), weight=weight)
    return nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1).long(), weight=weight)


def needs_our_loss(config: Any) -> bool:
    """Class weights, or several labels per example: many models' own loss is cross-entropy only (wav2vec2's and
    Whisper's audio classifiers ignore problem_type), so a multi-label run takes the loss above."""
    return class_weights(config) is not None or getattr(config, "problem_type", None) == "multi_label_classification"


log = logging.getLogger("tunesuite")


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from seed + epoch, like accelerate's seedable RandomSampler.

    transformers' sampler draws from the global RNG, whose state on a resume in the middle of an epoch is not
    the one that epoch started with: the resumed run would skip the right number of batches of another order.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by the Trainer (through accelerate) before each epoch
        self.epoch = epoch

    def __iter__(self):
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class TuneTrainer(Trainer):
    """Trainer with six changes:

    - evaluation keeps the dataset's order even with length-grouped training batches, so predictions line
      up with their rows (predictions.jsonl);
    - length-grouped training batches use the stored length column instead of re-measuring every example,
      in an order seeded per epoch, so a resume in the middle of an epoch continues it exactly;
    - with --unfreeze-after-epochs the optimizer also holds the frozen parameters; AdamW skips parameters
      without gradients, so they cost nothing until they unfreeze;
    - with class weights in the model config (--class-weights) the loss is the weighted one (train/trainer.py),
      computed from the logits, so it holds for peft-wrapped models too; a multi-label run's loss is binary
      cross-entropy computed there too (models whose forward has cross-entropy only train multi-label);
    - the last evaluation during training is kept with its step, so the final evaluation of the same split
      with the same weights reuses it instead of scoring the split again (`scored`);
    - a sequence-to-sequence model is scored on the ids it generates (`prediction_step`).
    """

    unfreeze_later = False
    _keeping = False
    _last_scored: tuple[int, PredictionOutput] | None = None

    def _evaluate(self, *args, **kwargs):  # the evaluations during training (eval_strategy)
        self._keeping, self._last_scored = True, None
        try:
            return super()._evaluate(*args, **kwargs)
        finally:
            self._keeping = False

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        if self._keeping:
            self._last_scored = (self.state.global_step, PredictionOutput(output.predictions, output.label_ids,
                                                                          output.metrics))
        return output

    def _load_best_model(self) -> None:  # other weights than the last evaluation's
        self._last_scored = None
        super()._load_best_model()

    def scored(self, dataset) -> PredictionOutput | None:
        """The last evaluation during training, when it scored `dataset` with the current weights."""
        if self._last_scored is None or dataset is not self.eval_dataset:
            return None
        step, output = self._last_scored
        return output if step == self.state.global_step else None

    def _run_epoch(self, **kwargs):
        """A resume from a --save-steps checkpoint written at an epoch's last step first runs that epoch's end.

        transformers starts the next epoch, so the uninterrupted run's epoch end (on_epoch_end callbacks such as
        freeze-then-unfreeze, the epoch's evaluation, whose dataloader draws from the global RNG) never happens:
        the resumed run trains on with other random numbers (dropout) and other callback state. Here the RNG
        state of the checkpoint is restored, the epoch end runs as it would have, and the epoch starts from there.
        """
        checkpoint, epoch = kwargs["resume_from_checkpoint"], kwargs["epoch"]
        if (checkpoint is not None and epoch == kwargs["epochs_trained"] > 0
                and self.state.global_step == epoch * kwargs["num_update_steps_per_epoch"]
                and epoch_end_pending(checkpoint, self.args)):
            self._load_rng_state(checkpoint)
            self.control = self.callback_handler.on_epoch_end(self.args, self.state, self.control)
            self._maybe_log_save_evaluate(self._tr_loss, None, kwargs["model"], kwargs["trial"], epoch - 1,
                                          kwargs["ignore_keys_for_eval"], kwargs["start_time"])
            if self.control.should_training_stop:  # early stopping, a time budget: as the uninterrupted run
                return None
            kwargs["resume_from_checkpoint"] = None  # the RNG is where the uninterrupted run had it: keep it
        return super()._run_epoch(**kwargs)

    def _load_callback_state(self) -> None:
        """Callback state is training state (early stopping's count of evaluations without improvement, whether
        the backbone is unfrozen yet): restore it on every resume. transformers does so only with
        --restore-callback-states-from-checkpoint, and then with the checkpoint's arguments too; here each
        callback keeps this run's arguments (a new --early-stopping-patience holds) and takes back its state."""
        if self.args.restore_callback_states_from_checkpoint:
            super()._load_callback_state()
            return
        seen: dict[str, int] = {}
        for callback in self.callback_handler.callbacks:
            if not isinstance(callback, ExportableState):
                continue
            name = type(callback).__name__
            stored = self.state.stateful_callbacks.get(name)
            stored = stored if isinstance(stored, list) else [stored] if stored else []
            index = seen[name] = seen.get(name, -1) + 1  # several of one class: in order
            if index < len(stored):
                for attribute, value in stored[index].get("attributes", {}).items():
                    setattr(callback, attribute, value)

    _resuming_from: str | None = None

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """A checkpoint whose weights do not fit this model (another model, mode or LoRA rank, written by a tool
        that left no record to check first) ends in one line, and a partial fit is refused too."""
        self._resuming_from = resume_from_checkpoint
        try:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        except (RuntimeError, ValueError, KeyError) as e:
            raise TunesuiteError(unfit_message(resume_from_checkpoint, "weights", e)) from None
        finally:
            self._resuming_from = None

    def _issue_warnings_after_load(self, load_result):
        super()._issue_warnings_after_load(load_result)
        if self._resuming_from is None:  # the best model at the end: this run's own checkpoint
            return
        tied = set(getattr(self.model, "all_tied_weights_keys", None) or ())  # not saved: tied to another
        missing = [k for k in load_result.missing_keys if k not in tied]
        if missing or load_result.unexpected_keys:
            raise ValueError(f"{len(missing)} of this model's weights missing, e.g. {missing[:2]}; "
                             f"{len(load_result.unexpected_keys)} unexpected, e.g. {load_result.unexpected_keys[:2]}")

    def _load_optimizer_and_scheduler(self, checkpoint):
        try:
            super()._load_optimizer_and_scheduler(checkpoint)
        except (RuntimeError, ValueError, KeyError) as e:  # other trainable parameters than the run's
            raise TunesuiteError(unfit_message(checkpoint, "optimizer state", e)) from None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        config = self.accelerator.unwrap_model(model).config
        if not needs_our_loss(config) or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)  # prediction_step still reads the labels from its own dict
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = classification_loss(outputs.logits, labels, config)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """A sequence-to-sequence model (Whisper) is scored on what it generates, as Seq2SeqTrainer's
        predict_with_generate: the loss from the labels, the predictions from `generate` (token ids). The encoder
        runs once per batch: the loss and `generate` both read its output."""
        unwrapped = self.accelerator.unwrap_model(model)
        base = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped
        if prediction_loss_only or not (getattr(base.config, "is_encoder_decoder", False) and base.can_generate()):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        given = {k: v for k, v in inputs.items() if k not in ("labels", "decoder_input_ids", "decoder_attention_mask")}
        if "input_features" in given and "encoder_outputs" not in given:
            with torch.no_grad():  # as generate ran it before: outside autocast
                given["encoder_outputs"] = base.get_encoder()(given.pop("input_features"),
                                                              attention_mask=given.get("attention_mask"))
            inputs = {**inputs, "encoder_outputs": given["encoder_outputs"]}
        loss, _, _ = super().prediction_step(model, inputs, True, ignore_keys)
        with torch.no_grad():
            generated = unwrapped.generate(**given)
        return loss, generated, inputs.get("labels")

    def _get_eval_sampler(self, eval_dataset):
        if eval_dataset is None or self.args.world_size > 1:
            return None  # distributed: accelerate shards the dataset in order
        return torch.utils.data.SequentialSampler(eval_dataset)

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        # transformers drops unused columns, the stored lengths too, before it builds the length-grouped
        # sampler, which then re-reads every example to measure it; give it the stored lengths
        name, stored = self.args.length_column_name, self.train_dataset
        if name in getattr(stored, "column_names", ()):
            lengths = stored[name]
        else:
            sampler = super()._get_train_sampler(train_dataset)
            if not isinstance(sampler, LengthGroupedSampler):
                return sampler
            lengths = sampler.lengths
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return SeededLengthGroupedSampler(batch, lengths, seed)

    def create_optimizer(self, *args, **kwargs):
        if not self.unfreeze_later:
            return super().create_optimizer(*args, **kwargs)
        frozen = [p for p in self.model.parameters() if not p.requires_grad]
        for p in frozen:
            p.requires_grad_(True)
        try:
            return super().create_optimizer(*args, **kwargs)
        finally:
            for p in frozen:
                p.requires_grad_(False)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """The model, its processor and training_args.bin (written atomically: `_args_saved_atomically`)."""
        with _args_saved_atomically():
            super()._save(output_dir, state_dict)


@contextlib.contextmanager
def _args_saved_atomically() -> Iterator[None]:
    """While the Trainer saves a model: its `torch.save(args, ".../training_args.bin")` goes to memory first, then
    through the atomic writer. torch writes a path in place (a full disk leaves half a file) and reports a failed
    write as a RuntimeError without its errno; written here, a full disk is an OSError(ENOSPC) and no file is torn.
    Only that one file is rerouted (the Trainer has no hook for it); every other torch.save passes through."""
    from transformers.trainer import TRAINING_ARGS_NAME

    original = torch.save

    def save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)) or os.path.basename(f) != TRAINING_ARGS_NAME:
            return original(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        original(obj, buffer, *args, **kwargs)
        write_bytes_atomic(f, buffer.getvalue())

    torch.save = save
    try:
        yield
    finally:
        torch.save = original
