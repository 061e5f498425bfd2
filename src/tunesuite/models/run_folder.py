"""The one reader of a finished run's folder: its config (run_config.yaml), results (all_results.json), class
names (config.json), task, and what it saved (a plain checkpoint, a peft adapter, or our own prompts).

Everything that opens a run folder (report, eval, predict, export, push, `--model OUT`, the card) asks a
RunFolder, so a folder that is no run, or a file that cannot be read, fails the same way everywhere: one
TunesuiteError naming the folder or file and the fix. Files are read when first asked for, once per instance.
The run writes these files elsewhere (train/outputs.py); this module only reads them.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from tunesuite import registry
from tunesuite.errors import TunesuiteError

CONFIG = "run_config.yaml"
RESULTS = "all_results.json"
MODEL_CONFIG = "config.json"
ADAPTER = "adapter_config.json"


def class_names(id2label: dict | None) -> list[str] | None:
    """Class names in id order (keys as ints or, from JSON, strings); None for unnamed (LABEL_0, ...) or missing
    label maps."""
    if not id2label:
        return None
    names = [str(id2label[i]) for i in sorted(id2label, key=int)]
    return None if names[0] == "LABEL_0" else names


def _unreadable(file: Path, reason: Any) -> TunesuiteError:
    reason = " ".join(str(reason).split())
    return TunesuiteError(f"cannot read {file} ({reason}): fix the file, or rerun the training that wrote it")


class RunFolder:
    """A finished tunesuite run's folder `out`, read lazily."""

    def __init__(self, out: str | Path):
        self.out = Path(out).expanduser()

    @classmethod
    def read(cls, out: str | Path) -> RunFolder:
        """The run in `out`, its config read now: a folder that is no run fails here, before any work."""
        run = cls(out)
        run.config  # noqa: B018 (read for its check)
        return run

    @classmethod
    def find(cls, path: str | Path | None) -> RunFolder | None:
        """The run in `path` when it holds a run_config.yaml; None for anything else (a checkpoint, a Hub id),
        which `--model` takes as a pretrained model."""
        if not path or not (Path(path).expanduser() / CONFIG).is_file():
            return None
        return cls.read(path)

    def read_json(self, name: str, default: Any = None) -> Any:
        """A JSON file of the run (`default` when it is absent); an unreadable one is an error naming it."""
        file = self.out / name
        if not file.is_file():
            return default
        try:
            return json.loads(file.read_text())
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise _unreadable(file, e) from None

    def read_jsonl(self, name: str) -> list[Any]:
        """A JSON-lines file of the run, one value per non-blank line ([] when it is absent)."""
        file = self.out / name
        if not file.is_file():
            return []
        try:
            return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as e:
            raise _unreadable(file, e) from None

    @cached_property
    def config(self) -> dict[str, Any]:
        """run_config.yaml: the merged config the run saved (enough to repeat it), with its task."""
        import yaml

        file = self.out / CONFIG
        if not file.is_file():
            raise TunesuiteError(f"{self.out} holds no {CONFIG}: point to a finished tunesuite output folder")
        try:
            saved = yaml.safe_load(file.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise _unreadable(file, f"not valid YAML: {problem}{where}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise _unreadable(file, e) from None
        if not isinstance(saved, dict) or not saved.get("task"):
            raise TunesuiteError(f"{file} names no task (a 'task:' line); is it a tunesuite run config?")
        return saved

    @property
    def task_name(self) -> str:
        return str(self.config["task"])

    @cached_property
    def task(self) -> registry.Task:
        """The registered task the run trained (a built-in one imported on first use)."""
        task = registry.find_task(self.task_name)
        if task is None:
            raise TunesuiteError(f"{self.out / CONFIG} names the task {self.task_name!r}, which is not registered "
                                 f"here; tasks: {', '.join(registry.task_names())} (import the module that "
                                 "registers it first)")
        return task

    @property
    def mode(self) -> str | None:
        """The mode the run trained with, as saved (None in a config written without one)."""
        mode = self.config.get("mode")
        return None if mode is None else str(mode)

    @cached_property
    def results(self) -> dict[str, Any]:
        """all_results.json: every metric of the run; empty when it wrote none."""
        return self.read_json(RESULTS, {})

    @cached_property
    def model_config(self) -> dict[str, Any]:
        """config.json as saved (for an adapter run: its base's config with the run's labels); empty if absent."""
        return self.read_json(MODEL_CONFIG, {})

    @property
    def labels(self) -> list[str] | None:
        """The class names in id order; None when the model's labels are unnamed (or it has none: speech)."""
        return class_names(self.model_config.get("id2label"))

    @property
    def has_adapter(self) -> bool:
        """A peft adapter beside its base's config (LoRA, peft prompts)."""
        return (self.out / ADAPTER).is_file()

    @property
    def has_prompts(self) -> bool:
        """A checkpoint with our own prompts (modes/own_prompts.py): they need tunesuite to load."""
        from tunesuite.modes.own_prompts import CONFIG_KEY  # torch: only when asked

        return bool(self.model_config.get(CONFIG_KEY))

    @property
    def has_scorer(self) -> bool:
        """A run of a mode that trains nothing: its classes live in a scorer (modes/label_scorer.py), not the head."""
        from tunesuite.modes.label_scorer import CONFIG_KEY  # torch: only when asked

        return bool(self.model_config.get(CONFIG_KEY))

    @property
    def plain(self) -> bool:
        """A plain transformers checkpoint (full, frozen, bitfit): no adapter, no prompts of our own."""
        return not self.has_adapter and not self.has_prompts
