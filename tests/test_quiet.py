"""What a run shows on the console, on tiny runs of every task: one bar per long step, readable log lines instead of
Trainer dicts, no library bars for short steps or local files, no escape codes off a terminal, no deprecation
warnings raised from our code; and what is really wrong is still said."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from pathlib import Path

import pytest
from asr_fixtures import write_tone_corpus
from audio_fixtures import write_pitch_csvs
from image_fixtures import write_image_folder

import tunesuite

RUNS = {  # task, model fixture, data fixture (or a writer of fresh data: nothing decoded before), extra flags
    "text": ("text-classification", "tiny_bert", "topic_data", []),
    # fresh images: a folder other tests checked already has its check cached (no work, so no bar)
    "image": ("image-classification", "tiny_vit",
              lambda d: write_image_folder(d, {"train": 16, "validation": 4, "test": 4}),
              ["--mode", "frozen", "--no-augment"]),
    "speech": ("asr", "tiny_w2v", lambda d: write_tone_corpus(d, {"train": 16, "validation": 4, "test": 4}), []),
    "audio": ("audio-classification", "tiny_w2v",
              lambda d: write_pitch_csvs(d, {"train": 16, "validation": 6, "test": 6}), []),
}
SRC = str(Path(tunesuite.__file__).parent)


@contextlib.contextmanager
def transformers_log():
    """What transformers logs, as its own handler formats it (after our filter), whatever stream that handler has."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    logger = logging.getLogger("transformers")
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def run_cli(capfd, request, tmp_path, name):
    task, model, data, extra = RUNS[name]
    data = data(tmp_path / "data") if callable(data) else request.getfixturevalue(data)
    argv = ["--model", str(request.getfixturevalue(model)), "--dataset", str(data),
            "--output-dir", str(tmp_path / name), "--max-steps", "4", "--per-device-train-batch-size", "8",
            "--eval-strategy", "steps", "--eval-steps", "2", "--logging-steps", "1", "--save-strategy", "no",
            "--disable-tqdm", "false", *extra]
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught, transformers_log() as records:
        warnings.simplefilter("always")
        tunesuite.main(task, argv)
    out, err = capfd.readouterr()
    return out, err + "\n".join(records), caught


@pytest.mark.parametrize("name", list(RUNS))
def test_console_of_a_run(capfd, request, tmp_path, name):
    out, err, caught = run_cli(capfd, request, tmp_path, name)
    text = out + err
    assert "\x1b[" not in text  # pytest's capture is no terminal: no colours, no cursor moves (nested bars)
    assert "{'" not in text and "'eval_loss'" not in text  # no Trainer dicts printed as strings
    assert "Generating train split" not in text and "Downloading data" not in text  # local files
    assert "Loading weights" not in text and "Writing model shards" not in text
    assert re.search(r"tunesuite: epoch [\d.]+: eval_loss", err)  # evaluations as one line each
    assert re.search(r"4/4 \[", err)  # the training bar
    ours = [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))
            and w.filename.startswith(SRC)]
    assert not ours, [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
    if name == "image":
        assert "checking train images" in err and "extracting train features" in err
    if name in ("speech", "audio"):
        assert "decoding train audio" in err


def test_a_real_load_problem_is_still_reported_plainly(capfd, request, tmp_path):
    """A backbone without the task's head: transformers' load report says what is MISSING, without escapes."""
    _, err, _ = run_cli(capfd, request, tmp_path, "text")
    assert "LOAD REPORT" in err and "classifier.weight" in err and "MISSING" in err
    assert "\x1b[" not in err


def test_disable_tqdm_logs_lines_not_dicts(capfd, tiny_bert, topic_data, tmp_path):
    capfd.readouterr()
    tunesuite.main("text-classification", ["--model", str(tiny_bert), "--dataset", str(topic_data), "--output-dir",
                                           str(tmp_path / "o"), "--max-steps", "2", "--logging-steps", "1",
                                           "--save-strategy", "no", "--disable-tqdm", "true"])
    out, err = capfd.readouterr()
    assert "{'" not in out + err and re.search(r"tunesuite: epoch [\d.]+: loss [\d.]+", err)


def test_load_is_quiet_about_our_own_prompt_weights(trained, capfd):
    """tunesuite.load restores the prompts: no transformers load report calls them UNEXPECTED."""
    run = trained("image-vit", "prompt", max_steps=2)
    capfd.readouterr()
    with transformers_log() as records:
        tunesuite.load(run.out)
    said = "\n".join([*capfd.readouterr(), *records])
    assert "UNEXPECTED" not in said and "prompt." not in said
    # what is really unexpected is still reported: transformers alone does not know the prompt weights
    from transformers import AutoModelForImageClassification

    with transformers_log() as records:
        AutoModelForImageClassification.from_pretrained(run.out)
    said = "\n".join([*capfd.readouterr(), *records])
    assert "UNEXPECTED" in said and "prompt.tokens" in said


def test_load_is_quiet_about_the_head_an_adapter_restores(trained, capfd):
    """predict/export/load open a LoRA run's base, whose head the adapter restores right after: no transformers
    report of MISSING or newly initialized head weights (it would tell the user to train a trained model)."""
    run = trained("text", "lora", max_steps=2)
    capfd.readouterr()
    with transformers_log() as records:
        tunesuite.load(run.out)
    said = "\n".join([*capfd.readouterr(), *records])
    assert "MISSING" not in said and "newly initialized" not in said and "LOAD REPORT" not in said


def test_an_adapter_run_shows_no_library_deprecation_it_cannot_act_on(capfd, request, tmp_path):
    """peft asks transformers for a renamed property on every LoRA run: that FutureWarning is not the user's."""
    RUNS["text-lora"] = (*RUNS["text"][:3], ["--mode", "lora"])
    try:
        _, _, caught = run_cli(capfd, request, tmp_path, "text-lora")
    finally:
        del RUNS["text-lora"]
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
