"""Shared fixtures: tiny models built from configs and data generated on the spot (no network)."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asr_fixtures import tiny_w2v, tone_data  # noqa: F401 (fixtures)
from audio_fixtures import pitch_data  # noqa: F401 (fixtures)
from family_fixtures import family_data, family_model  # noqa: F401 (fixtures)
from image_fixtures import CLASSES, image_data, image_models, tiny_resnet, tiny_vit  # noqa: F401 (fixtures)
from no_training_fixtures import masked_bert, sentence_bert, small_topics  # noqa: F401 (fixtures)
from whisper_fixtures import tiny_whisper_model  # noqa: F401 (fixtures)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models on a 2-core machine: one thread avoids spin-waiting between threads (10x faster when busy).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# --precision auto would train in bf16 on a CPU with native bf16 only: exact numbers (golden losses, save -> load
# parity) must not depend on the machine. Tests of auto itself unset it (tests/test_precision_auto.py).
os.environ.setdefault("TUNESUITE_PRECISION", "fp32")
# Subprocess timeouts guard against hangs only, never speed: far beyond any run on a loaded machine.
HANG_GUARD_S = 3600


@pytest.fixture(scope="session", autouse=True)
def torch_threads():
    """OMP_NUM_THREADS can come too late for torch (imported above by the fixtures): apply it directly."""
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def log(caplog):
    """What the tunesuite logger says (it does not propagate to the root logger once a CLI run set it up)."""
    logger = logging.getLogger("tunesuite")
    logger.addHandler(caplog.handler)
    level, logger.level = logger.level, logging.INFO
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def cli_error(capsys, task, argv: list[str]) -> str:
    """Run the task's command line, expecting exit 2 with an `error:` last line; that line."""
    import tunesuite

    with pytest.raises(SystemExit) as info:
        tunesuite.main(task, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


WORDS = {
    "sport": ["goal", "match", "team", "score", "coach", "league", "ball", "season"],
    "cooking": ["oven", "salt", "recipe", "bake", "flour", "sauce", "pan", "spice"],
    "music": ["guitar", "song", "band", "chord", "drum", "melody", "album", "tune"],
}
FILLER = ["the", "a", "of", "and", "to", "was", "is", "it", "very", "today"]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 BERT with a word-level vocab, saved and loaded back by path."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(int(os.environ.get("TUNESUITE_TEST_SEED", "0")))
    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *sum(WORDS.values(), [])]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast.from_pretrained(path).save_pretrained(path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertForSequenceClassification(config).base_model.save_pretrained(path)  # a backbone, like a Hub BERT
    return path


def make_sentence(rng: random.Random, topic: str) -> str:
    words = rng.sample(WORDS[topic], 3) + rng.sample(FILLER, 3)
    rng.shuffle(words)
    return " ".join(words)


def write_topic_csvs(folder: Path, n_train: int = 240, n_eval: int = 30, seed: int = 0) -> Path:
    """train.csv / validation.csv / test.csv with text,label: a separable three-topic problem."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation", n_eval), ("test", n_eval)):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for i in range(n):
                topic = list(WORDS)[i % len(WORDS)]
                writer.writerow([make_sentence(rng, topic), topic])
    return folder


@pytest.fixture(scope="session")
def topic_data(tmp_path_factory) -> Path:
    return write_topic_csvs(tmp_path_factory.mktemp("topics"))


@pytest.fixture(scope="session")
def pretrained_bert(tiny_bert, topic_data, tmp_path_factory) -> Path:
    """The tiny BERT after full fine-tuning on the topic data: a backbone whose features mean something,
    like a real pretrained checkpoint, so frozen / LoRA / prompt runs have something to build on."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import tunesuite

    work = tmp_path_factory.mktemp("pretrain")
    tunesuite.finetune("text-classification", str(tiny_bert), str(topic_data), mode="full",
                       output_dir=str(work / "run"), num_train_epochs=15, learning_rate=2e-3, warmup_steps=0.1, seed=1,
                       save_strategy="no", eval_strategy="no", disable_tqdm=True)
    path = tmp_path_factory.mktemp("pretrained-bert")
    AutoModelForSequenceClassification.from_pretrained(work / "run").base_model.save_pretrained(path)
    AutoTokenizer.from_pretrained(work / "run").save_pretrained(path)
    return path


# The task x mode matrix (tests/test_matrix.py; the task tests reuse its runs): each task setup with the flags of
# its short run, per mode. A mode missing from `modes` (a user's) runs with its own default learning rate.
@dataclass(frozen=True)
class Setup:
    task: str
    model: str  # fixture names
    data: str
    common: dict[str, Any]
    modes: dict[str, dict[str, Any]]
    reports: tuple[str, ...]  # files the run writes besides the model, all_results.json and run_config.yaml
    fields: tuple[str, str, str]  # predictions.jsonl: input, output; the same output in Predictor.predict
    refused: tuple[str, ...] = ()  # modes the setup's model refuses (one error line) instead of training


_IMAGE = {"common": {"per_device_train_batch_size": 8, "eval_strategy": "no", "save_strategy": "no",
                     "disable_tqdm": True, "seed": 3, "num_train_epochs": 4, "do_predict": True},
          "modes": {"full": {"learning_rate": 3e-3}, "frozen": {"learning_rate": 5e-2, "num_train_epochs": 8},
                    "bitfit": {"learning_rate": 1e-2, "num_train_epochs": 8}, "lora": {"learning_rate": 1e-2},
                    "prompt": {"learning_rate": 5e-2, "num_train_epochs": 8, "num_virtual_tokens": 4,
                               "prompt_pad": 4, "prompt_depth": "deep"}},  # deep: ViT tokens at every layer
          "reports": ("test_per_class.json", "test_confusion_matrix.png", "preprocessor_config.json"),
          "fields": ("image", "label", "label")}
SETUPS = {
    "text": Setup("text-classification", "pretrained_bert", "topic_data",
                  {"num_train_epochs": 5, "warmup_steps": 0.1, "disable_tqdm": True, "seed": 3, "save_strategy": "no",
                   "do_predict": True},
                  {mode: {"learning_rate": lr} for mode, lr in
                   {"full": 1e-3, "frozen": 3e-2, "bitfit": 1e-2, "lora": 1e-2, "prompt": 3e-2}.items()},
                  ("test_per_class.json", "test_confusion_matrix.png", "tokenizer.json"), ("text", "label", "label")),
    "image-vit": Setup("image-classification", "tiny_vit", "image_data", **_IMAGE),
    "image-resnet": Setup("image-classification", "tiny_resnet", "image_data", **_IMAGE),
    # Small steps: the runs stay far from transcribing, so their transcripts are long and varied and the reload
    # and pipeline comparisons see any difference (test_matrix checks the loss falls).
    "speech": Setup("asr", "tiny_w2v", "tone_data",
                    {"max_steps": 4, "per_device_train_batch_size": 8, "warmup_steps": 0, "disable_tqdm": True,
                     "seed": 0, "save_strategy": "no", "eval_strategy": "no", "logging_steps": 4, "do_predict": True},
                    {"full": {"learning_rate": 1e-3}, "frozen": {"learning_rate": 1e-3},
                     "bitfit": {"learning_rate": 1e-3}, "lora": {"learning_rate": 1e-3, "lora_r": 4},
                     "prompt": {"learning_rate": 1e-3, "num_virtual_tokens": 4}},
                    ("predictions.jsonl", "vocab.json"), ("path", "hypothesis", "text")),
    # Pitch classes from the tiny CTC model: a CTC checkpoint of this suite as the encoder, with a new head.
    "audio": Setup("audio-classification", "tiny_w2v", "pitch_data",
                   {"num_train_epochs": 4, "per_device_train_batch_size": 8, "warmup_steps": 0, "disable_tqdm": True,
                    "seed": 3, "save_strategy": "no", "eval_strategy": "no", "do_predict": True},
                   {mode: {"learning_rate": lr} for mode, lr in
                    {"full": 3e-3, "frozen": 2e-2, "bitfit": 1e-2, "lora": 1e-2, "prompt": 2e-2}.items()},
                   ("test_per_class.json", "test_confusion_matrix.png", "preprocessor_config.json"),
                   ("path", "label", "label")),
    # Whisper (the tiny converted one, whisper_fixtures.py): transcripts, and pitch classes from its encoder alone
    # (WhisperForAudioClassification). Prompts: frames after the encoder (asr), tokens at its input (audio).
    "whisper-asr": Setup("asr", "tiny_whisper_model", "tone_data",
                         {"max_steps": 6, "per_device_train_batch_size": 4, "warmup_steps": 0, "disable_tqdm": True,
                          "seed": 0, "save_strategy": "no", "eval_strategy": "no", "logging_steps": 6,
                          "do_predict": True},
                         {mode: {"learning_rate": lr} for mode, lr in
                          {"full": 1e-2, "frozen": 1e-2, "bitfit": 1e-2, "lora": 1e-2}.items()}
                         | {"prompt": {"learning_rate": 3e-2, "num_virtual_tokens": 4}},
                         ("predictions.jsonl", "tokenizer.json"), ("path", "hypothesis", "text")),
    "whisper-audio": Setup("audio-classification", "tiny_whisper_model", "pitch_data",
                           {"max_steps": 24, "per_device_train_batch_size": 8, "warmup_steps": 0,
                            "disable_tqdm": True, "seed": 3, "save_strategy": "no", "eval_strategy": "no",
                            "do_predict": True, "augment": False},
                           {mode: {"learning_rate": 3e-3} for mode in ("full", "frozen", "bitfit", "lora")}
                           | {"prompt": {"learning_rate": 3e-3, "num_virtual_tokens": 4, "prompt_depth": "deep"}},
                           ("test_per_class.json", "test_confusion_matrix.png", "preprocessor_config.json"),
                           ("path", "label", "label")),
}


@dataclass
class Run:
    result: dict[str, Any]
    out: Path
    trainable: set[str]  # parameters that train, right after the mode's apply
    names: set[str]  # every parameter then
    head: list[str]  # the modules the mode was told always train


def trainable_names(model: Any) -> set[str]:
    """The parameters that train (requires_grad), by name: the one reading of "what trains" the tests share."""
    return {n for n, p in model.named_parameters() if p.requires_grad}


# What a task's model is built with before its mode applies (the labels the data would give).
MODEL_LABELS = {
    "text-classification": {"num_labels": 3, "id2label": {0: "a", 1: "b", 2: "c"},
                            "label2id": {"a": 0, "b": 1, "c": 2}},
    "image-classification": {"num_labels": 3, "id2label": dict(enumerate(CLASSES)),
                             "label2id": {c: i for i, c in enumerate(CLASSES)}},
    "automatic-speech-recognition": {"vocab_size": 7, "pad_token_id": 0},
    "audio-classification": {"num_labels": 3, "id2label": {0: "high", 1: "low", 2: "mid"},
                             "label2id": {"high": 0, "low": 1, "mid": 2}},
}


def model_after_mode(task_name: str, model: Path, data: Path, out: Path, mode: str, *argv: str) -> Any:
    """The model a run of `task_name` with this command line would train, right after its mode applied (nothing
    read from the data, nothing trained): what the trainable-set tests ask about."""
    import tunesuite
    from tunesuite.cli import parse_args
    from tunesuite.train.recipe import apply_mode, load_model

    task = tunesuite.get_task(task_name)
    cfg = parse_args(task, ["--model", str(model), "--dataset", str(data), "--mode", mode, "--output-dir", str(out),
                            *argv])
    loaded, head = load_model(task, cfg, MODEL_LABELS[task.name])
    return apply_mode(loaded, task, cfg, head)


@contextlib.contextmanager
def recording_trainable(mode: str):
    """The registered mode, swapped for one that records right after it runs which parameters train (`trainable`),
    every parameter (`names`) and the head it was given; yields that record, restores the mode after."""
    from tunesuite import registry

    modes = registry.modes()
    original, seen = modes[mode], {}

    def recording(model, ctx):
        model = original.apply(model, ctx)
        seen.update(trainable=trainable_names(model),
                    names={n for n, _ in model.named_parameters()}, head=list(ctx.head))
        return model

    modes[mode] = dataclasses.replace(original, apply=recording)
    try:
        yield seen
    finally:
        modes[mode] = original


@pytest.fixture(scope="session")
def trained(request, tmp_path_factory):
    """trained(setup, mode, **flags) -> Run: each distinct run once per session, shared by the tests."""
    import tunesuite
    from tunesuite import registry

    done: dict[tuple, Run] = {}
    root = tmp_path_factory.mktemp("runs")

    def run(setup: str, mode: str, **flags: Any) -> Run:
        key = (setup, mode, *sorted(flags.items()))
        if key in done:
            return done[key]
        spec, original = SETUPS[setup], registry.modes()[mode]
        settings = {**spec.common, **spec.modes.get(mode, {"learning_rate": original.learning_rate}), **flags}
        out = root / f"{setup}-{mode}-{len(done)}"
        with recording_trainable(mode) as seen:
            result = tunesuite.finetune(spec.task, str(request.getfixturevalue(spec.model)),
                                        str(request.getfixturevalue(spec.data)), mode=mode, output_dir=str(out),
                                        **settings)
        done[key] = Run(result, out, **seen)
        return done[key]

    return run
