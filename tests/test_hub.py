"""Model card, dry-run upload folder, a stubbed Hub client, fail-fast token checks; no network."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import tunesuite
from tunesuite.errors import TunesuiteError
from tunesuite.publish import hub

SECRET = "hf_SECRETsecretSECRET"


class FakeHub:
    """Records what would reach the Hub."""

    def __init__(self, fail_upload: bool = False):
        self.repos, self.uploaded, self.fail_upload = [], {}, fail_upload

    def whoami(self):
        return {"name": "me"}

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.repos.append((repo_id, private))

    def upload_folder(self, folder_path, repo_id, commit_message=""):
        if self.fail_upload:
            raise ConnectionError("503 Service Unavailable")
        self.uploaded = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}


@pytest.fixture(scope="module")
def lora_run(pretrained_bert, topic_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "run"
    tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode="lora",
                       output_dir=str(out), max_steps=3, disable_tqdm=True, push_to_hub=True,
                       hub_model_id="me/topics", hub_token=SECRET, hub_dry_run=True)
    return out


def test_dry_run_writes_what_would_be_uploaded(lora_run):
    staged = {p.name for p in (lora_run / "hub_upload").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "config.json", "tokenizer.json",
            "README.md", "run_config.yaml", "all_results.json"} <= staged
    assert not any(name.startswith("checkpoint") or name == "training_args.bin" for name in staged)


def test_model_card_has_metadata_results_command_and_no_token(lora_run):
    card = (lora_run / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert Path(meta["base_model"]).name.startswith("pretrained-bert")
    assert "accuracy" in meta["metrics"] and "tunesuite" in meta["tags"]
    assert "| accuracy |" in card and "tunesuite train text-classification" in card
    assert "--mode lora" in card
    for path in lora_run.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".yaml", ".json", ".txt"):
            assert SECRET not in path.read_text(errors="ignore"), path


def test_stubbed_hub_receives_exactly_the_dry_run_files(lora_run):
    dry = {p.name: p.read_bytes() for p in (lora_run / "hub_upload").iterdir()}
    fake = FakeHub()
    url = hub.push(lora_run, "me/topics", token="x", private=True, api=fake)
    assert url.endswith("me/topics") and fake.repos == [("me/topics", True)]
    assert fake.uploaded == dry


def test_merged_push_is_a_plain_checkpoint(lora_run):
    fake = FakeHub()
    hub.push(lora_run, "me/merged", api=fake, merged=True)
    assert "model.safetensors" in fake.uploaded and "adapter_config.json" not in fake.uploaded


def test_failed_push_keeps_the_model_and_says_how_to_retry(lora_run):
    with pytest.raises(TunesuiteError, match=r"tunesuite push .* --hub-model-id me/topics") as info:
        hub.push(lora_run, "me/topics", api=FakeHub(fail_upload=True))
    assert "503" in str(info.value)
    assert (lora_run / "adapter_model.safetensors").exists()


def test_bad_token_fails_before_training(tiny_bert, topic_data, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(TunesuiteError, match="cannot push to me/topics"):
        tunesuite.finetune("text-classification", str(tiny_bert), str(topic_data), output_dir=str(out),
                           push_to_hub=True, hub_model_id="me/topics", hub_token="bad")
    assert not out.exists()


def test_hub_token_reaches_no_file_and_no_log(tiny_bert, topic_data, tmp_path, capfd):
    """The Trainer pickles its arguments (training_args.bin, in every checkpoint too): the token must not be there,
    nor in any other file under OUT, nor in what the run logs."""
    import logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("tunesuite"), logging.getLogger("transformers")]
    for logger in loggers:
        logger.addHandler(handler)
    out = tmp_path / "run"
    try:
        tunesuite.finetune("text-classification", str(tiny_bert), str(topic_data), mode="lora", output_dir=str(out),
                           max_steps=2, save_strategy="steps", save_steps=1, eval_strategy="no", disable_tqdm=True,
                           push_to_hub=True, hub_model_id="me/topics", hub_token=SECRET, hub_dry_run=True)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files) and any("checkpoint-" in str(p) for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + "\n".join(records)
