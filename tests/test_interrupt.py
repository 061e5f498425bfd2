"""Ctrl-C during training (train/interrupt.py): the first stops the loop at the next step boundary, a second at
once; outside the loop, and in runs of several processes, SIGINT is Python's own."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from tunesuite.train.interrupt import stop_between_steps


@pytest.fixture(autouse=True)
def _sigint_as_a_terminal_has_it():
    """Python's own SIGINT handler for the test (a shell without job control starts a background suite with SIGINT
    ignored, and Python then keeps it ignored); the suite's own handler after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _Regression(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)}


class _CtrlC(TrainerCallback):
    """Sends SIGINT to this process at the start of the given steps, as a terminal would, and records where the
    loop was when each was sent."""

    def __init__(self, at: set[int]) -> None:
        self.at, self.sent = at, []

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step in self.at:
            self.sent.append(state.global_step)
            os.kill(os.getpid(), signal.SIGINT)


def _trainer(tmp_path, sender: _CtrlC) -> Trainer:
    rows = [{"x": torch.tensor([float(i), 1.0]), "y": torch.tensor(float(i))} for i in range(64)]
    args = TrainingArguments(str(tmp_path), max_steps=20, per_device_train_batch_size=2, save_strategy="no",
                             report_to=[], disable_tqdm=True, use_cpu=True)
    return Trainer(model=_Regression(), args=args, train_dataset=rows, callbacks=[sender])


def test_the_first_ctrl_c_finishes_the_step_it_landed_in(tmp_path):
    sender = _CtrlC({3})
    trainer = _trainer(tmp_path, sender)
    with pytest.raises(KeyboardInterrupt), stop_between_steps(trainer, processes=1):
        trainer.train()
    assert sender.sent == [3] and trainer.state.global_step == 4  # step 4 (the one begun) completed, no further
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    sender = _CtrlC({3})
    trainer = _trainer(tmp_path, sender)

    class Again(TrainerCallback):  # the second press, while the step is still running
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            if sender.sent:
                os.kill(os.getpid(), signal.SIGINT)

    trainer.add_callback(Again())
    with pytest.raises(KeyboardInterrupt), stop_between_steps(trainer, processes=1):
        trainer.train()
    assert trainer.state.global_step == 3  # the step under way did not finish


def test_several_processes_keep_pythons_sigint(tmp_path):
    sender = _CtrlC({3})
    trainer = _trainer(tmp_path, sender)
    with pytest.raises(KeyboardInterrupt), stop_between_steps(trainer, processes=2):
        trainer.train()
    assert trainer.state.global_step == 3  # raised inside the step's first callback
