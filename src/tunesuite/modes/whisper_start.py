"""The decoder's first tokens, as Whisper's `generate` writes them: start; on a multilingual model the language and
the task; then no-timestamps where the model has that token. Read from the generation config, the table `generate`
itself reads: the training targets (tasks/speech_language.py), the zero-shot scorer (speech_scorer.py) and the ONNX
predictor (models/onnx_seq2seq_predictor.py) all start from this one list."""

from __future__ import annotations

from typing import Any

DETECT = -1  # where a multilingual model's language is to be found per clip (the ONNX predictor's first step)


def language_token(language: str) -> str:
    """`en`, `<|en|>` -> `<|en|>`."""
    return language if language.startswith("<|") else f"<|{language}|>"


def start_tokens(generation: Any, language: str | None = None, task: str | None = None) -> list[int]:
    """The ids `generate` starts from. `language` (a code such as `en`, or its token) and `task` matter only on a
    multilingual model: no language is DETECT; no task is the generation config's, else transcribe."""
    ids = [int(generation.decoder_start_token_id)]
    if getattr(generation, "is_multilingual", False) and getattr(generation, "lang_to_id", None):
        spoken = DETECT if language is None else int(generation.lang_to_id[language_token(language)])
        ids += [spoken, int(generation.task_to_id[task or getattr(generation, "task", None) or "transcribe"])]
    if getattr(generation, "no_timestamps_token_id", None) is not None:
        ids.append(int(generation.no_timestamps_token_id))
    return ids
