"""A run exported to ONNX (`tunesuite export OUT DEST --format onnx`), predicting through onnxruntime.

It answers like the run's own Predictor: the task's make_batch turns raw inputs into the same tensors, the
session gives the logits, and the task's decode reads them with the exported config (labels, calibration
temperature, multi-label thresholds). Torch is used for the tensors only; the model runs in onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesuite.errors import TunesuiteError
from tunesuite.models.run_folder import RunFolder
from tunesuite.registry import Task

FP32 = "model.onnx"
INT8 = "model_int8.onnx"
FILES = {"fp32": FP32, "int8": INT8}


def is_onnx_export(folder: str | Path) -> bool:
    """A folder written by the ONNX export (its fp32 model is always kept)."""
    return (Path(folder).expanduser() / FP32).is_file()


def session(file: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session on `file`, all graph optimisations on; `threads` as many as torch uses, when
    the two are timed side by side (None: onnxruntime's own choice)."""
    try:
        import onnxruntime
    except ImportError:
        raise TunesuiteError(f"{file} needs onnxruntime to run: pip install 'tunesuite[deploy]'") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # its warnings about unused initialisers are not ours to act on
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])


class OnnxPredictor:
    """An exported model with its processor; `predict(items)` returns one dict per item, as Predictor does."""

    def __init__(self, task: Task, session: Any, processor: Any, config: Any):
        self.task, self.session, self.processor, self.config = task, session, processor, config
        self.input_names = [i.name for i in session.get_inputs()]

    def run(self, batch: dict[str, Any]) -> Any:
        """Logits (a torch tensor) for a batch of model inputs (torch tensors or numpy arrays)."""
        import numpy as np
        import torch

        missing = [name for name in self.input_names if name not in batch]
        if missing:
            raise TunesuiteError(f"the exported model takes {', '.join(missing)}, which the processor did not give; "
                                 "export the run again with this version of tunesuite")
        feed = {name: np.asarray(batch[name].numpy() if hasattr(batch[name], "numpy") else batch[name])
                for name in self.input_names}
        return torch.from_numpy(self.session.run(None, feed)[0])

    def _batches(self, items: list, batch_size: int):
        for start in range(0, len(items), batch_size):
            yield self.run(self.task.data.make_batch(self.processor, items[start : start + batch_size], self.config))

    def logits(self, items: list, batch_size: int = 32) -> Any:
        """Stacked logits (tasks with one output per input)."""
        import torch

        return torch.cat(list(self._batches(items, batch_size)))

    def predict(self, items: list, batch_size: int = 32) -> list[dict[str, Any]]:
        return [row for logits in self._batches(items, batch_size)
                for row in self.task.results.decode(logits, self.processor, self.config)]


def load(folder: str | Path, precision: str | None = None) -> OnnxPredictor:
    """The exported model in `folder`: int8 when the export kept one (it passed the gate), else fp32;
    `precision` ("fp32" or "int8") picks one."""
    from transformers import AutoConfig

    dest = Path(folder).expanduser()
    if precision is not None and precision not in FILES:
        raise TunesuiteError(f"precision {precision!r} is not one of {', '.join(FILES)}")
    name = FILES[precision] if precision else (INT8 if (dest / INT8).is_file() else FP32)
    if not (dest / name).is_file():
        raise TunesuiteError(f"{dest} holds no {name}: export with --quantize int8 for it, or ask for fp32")
    task = RunFolder(dest).task
    processor = task.data.load_processor(str(dest), None)
    return OnnxPredictor(task, session(dest / name), processor, AutoConfig.from_pretrained(dest))
