"""Load a finished run (full model, adapter, or prompts) and predict with it in one call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunesuite.models import finished_run, long_audio
from tunesuite.models.run_folder import RunFolder
from tunesuite.registry import Task
from tunesuite.tasks import speech_language


class Predictor:
    """A fine-tuned model with its processor; `predict(items)` returns one dict per item."""

    def __init__(self, task: Task, model: torch.nn.Module, processor: Any):
        self.task, self.model, self.processor = task, model.eval(), processor
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._generates = bool(getattr(base.config, "is_encoder_decoder", False)) and base.can_generate()
        if self._generates:  # the language and task a multilingual Whisper run was trained in
            speech_language.recall(model, processor)

    @property
    def config(self) -> Any:
        return self.model.config

    @torch.no_grad()
    def _batches(self, items: list, batch_size: int):
        for start in range(0, len(items), batch_size):
            batch = self.task.data.make_batch(self.processor, items[start : start + batch_size], self.config)
            batch = {k: v.to(self.model.device) for k, v in batch.items()}
            if self._generates:  # a sequence-to-sequence model (Whisper): the ids it writes
                yield self.model.generate(**batch).cpu()
            else:
                yield self.model(**batch).logits.float().cpu()

    def logits(self, items: list, batch_size: int = 32) -> torch.Tensor:
        """Stacked logits (tasks with one output per input; speech logits differ in length per batch)."""
        return torch.cat(list(self._batches(items, batch_size)))

    def predict(self, items: list, batch_size: int = 32) -> list[dict[str, Any]]:
        if self._generates:
            return self._transcribe(items, batch_size)
        return [row for logits in self._batches(items, batch_size)
                for row in self.task.results.decode(logits, self.processor, self.config)]

    def _transcribe(self, items: list, batch_size: int) -> list[dict[str, Any]]:
        """Speech to text: clips within the model's window in batches as evaluation generated them; longer ones
        whole, in overlapping windows (long_audio), their text decoded by the task like the rest."""
        from tunesuite.data import audio

        features = self.processor.feature_extractor
        clips = [audio.load(item, features.sampling_rate) for item in items]
        window = long_audio.window_samples(features)
        short = [i for i, clip in enumerate(clips) if len(clip) <= window]
        long = [i for i, clip in enumerate(clips) if len(clip) > window]
        rows: list[dict[str, Any]] = [{} for _ in items]
        done = self._batches([clips[i] for i in short], batch_size)
        decoded = [row for ids in done for row in self.task.results.decode(ids, self.processor, self.config)]
        for i, row in zip(short, decoded, strict=True):
            rows[i] = row
        tokenizer = self.processor.tokenizer
        for i, text in zip(long, long_audio.transcribe(self.model, self.processor, [clips[i] for i in long],
                                                       batch_size), strict=True):
            ids = torch.tensor([tokenizer(text, add_special_tokens=False).input_ids], dtype=torch.long)
            rows[i] = self.task.results.decode(ids, self.processor, self.config)[0]
        return rows


def load(out_dir: str | Path, device: str | None = None) -> Predictor:
    """A Predictor for the run saved in `out_dir` (reads its run_config.yaml to know the task); for a folder
    of `tunesuite export --format onnx`, its exported model run by onnxruntime (the same predict())."""
    from tunesuite import logs
    from tunesuite.models import onnx_predictor, onnx_seq2seq_predictor

    logs.plain_library_logs()
    out = Path(out_dir)
    if onnx_seq2seq_predictor.is_export(out):  # Whisper's two graphs, greedy decoding in onnxruntime
        return onnx_seq2seq_predictor.load(out)  # type: ignore[return-value]
    if onnx_predictor.is_onnx_export(out):
        return onnx_predictor.load(out)  # type: ignore[return-value] (same predict/logits/task/processor)
    task = RunFolder(out).task
    processor = task.data.load_processor(str(out), None)
    with logs.quiet_weight_bars():  # a second's bar for a local folder
        model = finished_run.open_run(task, out)
    if task.model.on_load is not None:
        model = task.model.on_load(model)
    if device:
        model.to(device)
    return Predictor(task, model, processor)
