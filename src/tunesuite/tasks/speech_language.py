"""--language and --speech-task for multilingual Whisper checkpoints: checked, then used the same way in training
targets and in generation.

Which tokens a checkpoint has for languages and tasks is read from its generation config (`is_multilingual`,
`lang_to_id`, `task_to_id`), the table `generate` itself reads; so the targets' prefix (start, language, task,
no-timestamps) is built from that table, never from the tokenizer's own guess by position. The choice travels with
a run in its saved tokenizer (`language`, `task` in tokenizer_config.json), so a finished run (adapters included,
whose base model's generation config knows nothing of it) generates in the language it was trained in.
"""

from __future__ import annotations

import difflib
from typing import Any

from tunesuite.errors import TunesuiteError
from tunesuite.modes.whisper_start import start_tokens

TASKS = ("transcribe", "translate")


def _names() -> dict[str, str]:
    """Every language name and code transformers knows -> its code (english -> en, en -> en)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    return {**TO_LANGUAGE_CODE, **{code: code for code in LANGUAGES}}


def check(generation: Any, language: str | None, task: str | None, path: str) -> tuple[str | None, str | None]:
    """(language code, task) for the checkpoint at `path`, or one clear error; (None, None) when neither is set.
    An English-only checkpoint takes --language en (it changes nothing) and nothing else."""
    if language is None and task is None:
        return None, None
    if task is not None and task not in TASKS:
        raise TunesuiteError(f"--speech-task {task}: must be one of {', '.join(TASKS)}")
    names = _names()
    code = names.get(language.strip().lower()) if language else None
    multilingual = bool(getattr(generation, "is_multilingual", False))
    if not multilingual:
        if code == "en" and task in (None, "transcribe"):
            return None, None
        asked = " ".join(f for f in (f"--language {language}" if language else "",
                                     f"--speech-task {task}" if task else "") if f)
        raise TunesuiteError(f"{asked}: --model {path} is English-only (its generation config is not "
                             "multilingual: it was never trained on language or task tokens); leave these flags out or "
                             "start from a multilingual Whisper (e.g. openai/whisper-tiny)")
    if language is None:
        raise TunesuiteError(f"--speech-task {task} needs --language (the language spoken in the data): the "
                             "targets start with its token")
    known = {c for c in names.values() if f"<|{c}|>" in (getattr(generation, "lang_to_id", None) or {})}
    if code not in known:
        spelled = sorted(known | {n for n, c in names.items() if c in known})
        close = difflib.get_close_matches(language.strip().lower(), spelled, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else f"it knows {', '.join(sorted(known)[:12])}..."
        raise TunesuiteError(f"--language {language}: not a language --model {path} knows ({hint})")
    if f"<|{task or 'transcribe'}|>" not in {f"<|{t}|>" for t in (getattr(generation, "task_to_id", None) or {})}:
        raise TunesuiteError(f"--speech-task {task or 'transcribe'}: --model {path} has no such task token "
                             f"(its generation config's task_to_id)")
    return code, task or "transcribe"


def prefix(generation: Any, language: str, task: str | None) -> list[int]:
    """The targets' first tokens, as `generate` starts (whisper_start): start, language, task, no-timestamps."""
    return start_tokens(generation, _names().get(language.lower(), language), task or "transcribe")


def apply(model: Any, language: str | None, task: str | None) -> None:
    """--language / --speech-task into the generation config of the model being trained (checked again on it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    generation = base.generation_config
    code, task = check(generation, language, task, str(getattr(base, "name_or_path", "")))
    if code:
        generation.language, generation.task = code, task


def remember(tokenizer: Any, code: str | None, task: str | None) -> None:
    """Kept on the tokenizer, which the run saves: a finished run reads it back (`recall`)."""
    tokenizer.language, tokenizer.task = code, task


def recall(model: Any, processor: Any) -> None:
    """The language and task a run's tokenizer remembers, set in the model's generation config."""
    tokenizer = getattr(processor, "tokenizer", None)
    code, task = getattr(tokenizer, "language", None), getattr(tokenizer, "task", None)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    generation = getattr(base, "generation_config", None)
    if code and generation is not None and getattr(generation, "is_multilingual", False):
        generation.language, generation.task = _names().get(code.lower(), code), task or "transcribe"
