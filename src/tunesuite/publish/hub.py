"""The upload folder and pushing a finished run to the Hugging Face Hub (the card comes from card.py)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

from tunesuite.errors import TunesuiteError
from tunesuite.models.run_folder import CONFIG, RESULTS, RunFolder
from tunesuite.publish.card import write_card

# Files of a finished run that belong on the Hub (checkpoints, optimizer state and predictions do not).
UPLOAD_PATTERNS = ("*.safetensors", "*.json", "*.txt", "*.model", "*.png", CONFIG, "README.md")
NOT_UPLOADED = {"trainer_state.json", "predictions.jsonl"}


def command_line(task: str, argv: list[str]) -> str:
    """The run as a `tunesuite train` command (argv already redacted)."""
    return shlex.join(["tunesuite", "train", task, *argv])


def stage_upload(out: Path, dest: Path, merged: bool = False) -> Path:
    """Copy (or, for --push-merged, merge) exactly what goes to the Hub into `dest`."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    run = RunFolder(out)
    if merged and run.has_adapter:
        from tunesuite.publish.export import merge

        merge(out, dest)
        for file in [*out.glob("*_per_class.json"), *out.glob("*.png"), out / CONFIG, out / RESULTS]:
            if file.is_file():
                shutil.copy2(file, dest / file.name)
        if (out / CONFIG).is_file() and (out / RESULTS).is_file():  # its card: a plain model
            write_card(dest, run.config, run.results, title=out.name)
        return dest
    for pattern in UPLOAD_PATTERNS:
        for file in out.glob(pattern):
            if file.is_file() and file.name not in NOT_UPLOADED:
                shutil.copy2(file, dest / file.name)
    return dest


def _api(token: str | None, api: Any = None) -> Any:
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi(token=token)


def check_access(repo_id: str, token: str | None, private: bool, api: Any = None) -> None:
    """Fail in seconds, before training: the token must be valid and the repo creatable."""
    api = _api(token, api)
    try:
        api.whoami()
        api.create_repo(repo_id, private=private, exist_ok=True)
    except Exception as e:  # network, auth and permission errors all mean the push cannot happen
        raise TunesuiteError(f"cannot push to {repo_id}: {_first_line(e)} (check --hub-token / "
                             "`hf auth login` and the repo name)") from None


def push(out: Path, repo_id: str, token: str | None = None, private: bool = False, merged: bool = False,
         api: Any = None) -> str:
    """Upload a finished run (adapter or merged model, processor, card, metrics) to `repo_id`."""
    out = Path(out)
    run = RunFolder.read(out)
    if not (out / "README.md").exists() or "tunesuite" not in (out / "README.md").read_text():
        write_card(out, run.config, run.results)
    stage = stage_upload(out, out / "hub_upload", merged)
    api = _api(token, api)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(stage), repo_id=repo_id, commit_message="Upload from tunesuite")
    except Exception as e:
        raise TunesuiteError(f"push to {repo_id} failed: {_first_line(e)}; the trained model is safe in {out}: "
                             f"push it later with `tunesuite push {out} --hub-model-id {repo_id}`") from None
    return f"https://huggingface.co/{repo_id}"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
