"""A finished run is a checkpoint too: `--model OUT` continues it. Learning-rate-0 continuations must predict
exactly like the run they start from (nothing re-initialised); one real continuation learns a new class."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch
from conftest import FILLER, WORDS, cli_error, make_sentence
from safetensors.torch import load_file

import tunesuite
from tunesuite import registry

STILL = {"learning_rate": 0.0, "max_steps": 1, "eval_strategy": "no", "save_strategy": "no", "disable_tqdm": True,
         "seed": 3}


def _texts(folder: Path, split: str = "test") -> tuple[list[str], list[str]]:
    with (folder / f"{split}.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def _logits(out: Path, items: list) -> torch.Tensor:
    return tunesuite.load(out).logits(items)


def _continue(task: str, run_dir: Path, data: Path, out: Path, mode: str, **flags) -> Path:
    tunesuite.finetune(task, str(run_dir), str(data), mode=mode, output_dir=str(out), **flags)
    return out


def _trainable(task: str, run_dir: Path, data: Path, out: Path, mode: str, **flags) -> set[str]:
    """Continue as _continue does, and return the names of the parameters that trained."""
    modes, seen = registry.modes(), set()
    original = modes[mode]

    def recording(model, ctx):
        model = original.apply(model, ctx)
        seen.update(n for n, p in model.named_parameters() if p.requires_grad)
        return model

    modes[mode] = dataclasses.replace(original, apply=recording)
    try:
        _continue(task, run_dir, data, out, mode, **flags)
    finally:
        modes[mode] = original
    return seen


@pytest.fixture(scope="module")
def four_topics(tmp_path_factory) -> Path:
    """The three topics plus a new class, 'chatter' (filler words only), under other row order."""
    folder, rng = tmp_path_factory.mktemp("four-topics"), random.Random(7)
    for split, n in (("train", 160), ("validation", 20), ("test", 40)):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for i in range(n):
                topic = ["chatter", *WORDS][i % 4]
                text = " ".join(rng.sample(FILLER, 6)) if topic == "chatter" else make_sentence(rng, topic)
                writer.writerow([text, topic])
    return folder


def test_full_run_grows_its_head_by_name(trained, topic_data, four_topics, tmp_path, log):
    first = trained("text", "full").out
    out = _continue("text-classification", first, four_topics, tmp_path / "still", "full", **STILL)
    assert "head grown from 3 to 4 classes: new rows for 'chatter'" in log.text
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "chatter", "1": "cooking", "2": "music", "3": "sport"}  # the data's order
    old, new = load_file(first / "model.safetensors"), load_file(out / "model.safetensors")
    old_ids = {v: int(k) for k, v in json.loads((first / "config.json").read_text())["id2label"].items()}
    for i, name in enumerate(config["id2label"].values()):
        if name in old_ids:  # the trained row, moved to the class's new id
            assert torch.equal(new["classifier.weight"][i], old["classifier.weight"][old_ids[name]])
    texts, _ = _texts(topic_data)
    before, after = _logits(first, texts), _logits(out, texts)
    for i, name in enumerate(config["id2label"].values()):
        if name in old_ids:
            assert torch.allclose(after[:, i], before[:, old_ids[name]], atol=1e-5)


def test_full_run_learns_a_new_class(trained, four_topics, tmp_path):
    out = _continue("text-classification", trained("text", "full").out, four_topics, tmp_path / "more", "full",
                    learning_rate=2e-3, num_train_epochs=4, warmup_steps=0.1, eval_strategy="no",
                    save_strategy="no", disable_tqdm=True, seed=3)
    texts, labels = _texts(four_topics)
    got = [row["label"] for row in tunesuite.load(out).predict(texts)]
    for name in ("chatter", "sport", "music"):
        hits = [g == name for g, want in zip(got, labels, strict=True) if want == name]
        assert sum(hits) >= 0.8 * len(hits), (name, got)


@pytest.mark.parametrize("mode", ["lora", "prompt"])
def test_adapter_run_keeps_training_its_adapter(trained, topic_data, tmp_path, mode, log):
    first = trained("text", mode).out
    out = tmp_path / mode
    trainable = _trainable("text-classification", first, topic_data, out, mode, **STILL)
    assert "its own adapter keep training" in log.text
    own = {"lora": "lora_", "prompt": "prompt_encoder."}[mode]  # the adapter, plus peft's copies of the head
    assert {n for n in trainable if own not in n} == {n for n in trainable if ".modules_to_save." in n}
    assert any(own in n for n in trainable) and any("classifier.modules_to_save" in n for n in trainable)
    base = json.loads((first / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == base
    old, new = load_file(first / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in old)
    if mode == "lora":
        assert any("lora_B" in k and old[k].abs().sum() > 0 for k in old)  # a trained adapter, not a fresh one
    texts, _ = _texts(topic_data)
    assert torch.equal(_logits(out, texts), _logits(first, texts))


def test_other_modes_on_finished_runs(trained, topic_data, tmp_path, log):
    """LoRA on a full run (a plain checkpoint); full on a LoRA run (merged first)."""
    texts, _ = _texts(topic_data)
    full, lora = trained("text", "full").out, trained("text", "lora").out
    on_full = _continue("text-classification", full, topic_data, tmp_path / "lora-on-full", "lora", **STILL)
    assert json.loads((on_full / "adapter_config.json").read_text())["base_model_name_or_path"] == str(full)
    assert torch.allclose(_logits(on_full, texts), _logits(full, texts), atol=1e-5)
    merged = _continue("text-classification", lora, topic_data, tmp_path / "full-on-lora", "full", **STILL)
    assert f"merged the lora adapter of {lora} into its base before --mode full" in log.text
    assert not (merged / "adapter_config.json").exists()
    assert torch.allclose(_logits(merged, texts), _logits(lora, texts), atol=1e-5)


def test_combinations_that_make_no_sense_are_one_error_line(trained, topic_data, image_data, four_topics, tmp_path,
                                                            capsys):
    prompt, full = trained("text", "prompt").out, trained("text", "full").out
    err = cli_error(capsys, "image-classification", ["--model", str(full), "--dataset", str(image_data),
                                                     "--output-dir", str(tmp_path / "a")])
    assert err == (f"error: --model {full} is a text-classification run; the image-classification task needs a "
                   "pretrained checkpoint or a finished image-classification run")
    err = cli_error(capsys, "text-classification", ["--model", str(prompt), "--dataset", str(topic_data),
                                                    "--mode", "full", "--output-dir", str(tmp_path / "b")])
    assert "continues only with --mode prompt" in err and "start from its base model" in err
    three = tmp_path / "three"
    three.mkdir()
    for split in ("train", "validation", "test"):  # 'sport' left out
        rows = (four_topics / f"{split}.csv").read_text().splitlines()
        (three / f"{split}.csv").write_text("\n".join(r for r in rows if not r.endswith(",sport")) + "\n")
    lora = trained("text", "lora").out  # its own adapter would have to forget 'sport'
    err = cli_error(capsys, "text-classification", ["--model", str(lora), "--dataset", str(three), "--mode", "lora",
                                                    "--output-dir", str(tmp_path / "c")])
    assert "was trained on 3 classes; the new data lacks 'sport'" in err


def test_a_plain_run_transfers_to_a_new_label_set_with_a_new_head(trained, four_topics, tmp_path, log):
    """Classes that leave some of the run's own out are a new task for its weights (the image demo's digits 0-4
    -> 5-9): the head starts fresh, as from any pretrained checkpoint."""
    full = trained("text", "full").out
    new = tmp_path / "new"
    new.mkdir()
    for split in ("train", "validation", "test"):  # 'sport' and 'music' out: two of the run's classes missing
        rows = (four_topics / f"{split}.csv").read_text().splitlines()
        (new / f"{split}.csv").write_text("\n".join(r for r in rows if not r.endswith((",sport", ",music"))) + "\n")
    tunesuite.finetune("text-classification", str(full), str(new), mode="full", output_dir=str(tmp_path / "out"),
                       max_steps=1, save_strategy="no", eval_strategy="no", disable_tqdm=True)
    assert "transfer to a new label set, with a new head" in log.text
    labels = json.loads((tmp_path / "out" / "config.json").read_text())["id2label"]
    assert "sport" not in labels.values() and len(labels) == 2


def test_image_prompt_run_keeps_its_prompts(trained, image_data, tmp_path, log):
    first = trained("image-vit", "prompt").out
    out = tmp_path / "vit"
    trainable = _trainable("image-classification", first, image_data, out, "prompt", per_device_train_batch_size=8,
                           **STILL)
    assert {n.split(".")[0] for n in trainable} == {"prompt", "classifier"}
    assert "its own prompts keep training" in log.text
    images = sorted(str(p) for p in (image_data / "test").rglob("*.png"))
    assert torch.equal(_logits(out, images), _logits(first, images))


def test_speech_run_continues_with_its_vocabulary(trained, tone_data, tmp_path, log):
    first = trained("speech", "full").out
    out = _continue("asr", first, tone_data, tmp_path / "ctc", "full", per_device_train_batch_size=8, **STILL)
    assert "using the model's own vocabulary" in log.text
    assert (out / "vocab.json").read_text() == (first / "vocab.json").read_text()
    clips = sorted(str(p) for p in Path(tone_data).rglob("test-*.wav"))[:6]
    assert tunesuite.load(out).predict(clips) == tunesuite.load(first).predict(clips)


def test_lora_run_grows_the_head_inside_its_adapter(trained, four_topics, topic_data, tmp_path, log):
    first = trained("text", "lora").out
    out = _continue("text-classification", first, four_topics, tmp_path / "lora4", "lora", **STILL)
    assert "head grown from 3 to 4 classes: new rows for 'chatter'" in log.text
    texts, _ = _texts(topic_data)
    before, after = _logits(first, texts), _logits(out, texts)
    old_ids = {v: int(k) for k, v in json.loads((first / "config.json").read_text())["id2label"].items()}
    new_ids = {v: int(k) for k, v in json.loads((out / "config.json").read_text())["id2label"].items()}
    assert new_ids.keys() == {*old_ids, "chatter"}
    for name, i in old_ids.items():
        assert torch.allclose(after[:, new_ids[name]], before[:, i], atol=1e-5)


def test_speech_run_grows_its_vocabulary(trained, tone_data, tmp_path, log):
    """New transcripts with a character the run's vocabulary lacks: a new vocabulary, a new CTC head."""
    first = trained("speech", "full").out
    new = tmp_path / "new"
    new.mkdir()
    for split in ("train", "validation", "test"):
        rows = (Path(tone_data) / f"{split}.csv").read_text().splitlines()
        rows = [rows[0], *(f"{Path(tone_data) / r.split(',')[0]},{r.split(',')[1]}F" for r in rows[1:])]
        (new / f"{split}.csv").write_text("\n".join(rows) + "\n")
    out = _continue("asr", first, new, tmp_path / "grown", "full", per_device_train_batch_size=8, **STILL)
    assert "the model's vocabulary lacks 'f'" in log.text
    assert "f" in json.loads((out / "vocab.json").read_text())
    sizes = [json.loads((run / "config.json").read_text())["vocab_size"] for run in (first, out)]
    assert sizes[1] == sizes[0] + 1
    assert tunesuite.load(out).predict([str(Path(tone_data) / "wavs" / "test-0.wav")])[0].keys() == {"text"}
