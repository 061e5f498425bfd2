"""BitFit on every task, and a mode registered from outside the package, end to end: what trains (by name),
save -> load -> the in-memory model's predictions, and the Mode's flags, help and default learning rate."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
import torch
import yaml
from asr_fixtures import SEED
from conftest import model_after_mode, trainable_names
from image_fixtures import CLASSES

import tunesuite
from tunesuite import registry

TEXTS = ["goal team coach the match", "flour and salt in the oven", "a song for the band today"]
QUIET = {"disable_tqdm": True, "save_strategy": "no", "warmup_steps": 0}


@pytest.fixture
def kept(monkeypatch):
    """The Trainer and prepared data of the next run, kept for the test (core.trainer.build, wrapped)."""
    from tunesuite.train import recipe as core_trainer

    found: dict = {}
    real = core_trainer.build

    def build(task, cfg):
        found["trainer"], found["prepared"] = real(task, cfg)
        found["task"] = task
        return found["trainer"], found["prepared"]

    monkeypatch.setattr(core_trainer, "build", build)
    return found


def trainable(kept) -> set[str]:
    return trainable_names(kept["trainer"].model)


def in_head(name: str, task) -> bool:
    """Under the task's head modules or those the model family adds (BERT's pooler: models/families.py)."""
    module = name.rsplit(".", 1)[0]
    heads = (*task.model.head_modules, *(h for f in registry.families().values() for h in f.head))
    return any(module == h or module.startswith(h + ".") for h in heads)


def bitfit_expected(kept, frozen_prefix: str | None = None) -> set[str]:
    """Every *.bias plus every parameter of the task's head modules (less what the task itself keeps frozen)."""
    task, model = kept["task"], kept["trainer"].model
    names = {n for n, _ in model.named_parameters() if n.endswith(".bias") or in_head(n, task)}
    return {n for n in names if not (frozen_prefix and n.startswith(frozen_prefix))}


def assert_reload_matches_memory(kept, out, items) -> None:
    """tunesuite.load(OUT) gives what the model that just trained gives, bit for bit."""
    memory = tunesuite.Predictor(kept["task"], kept["trainer"].model, kept["prepared"].processor)
    loaded = tunesuite.load(out)
    assert torch.equal(memory.logits(items), loaded.logits(items))
    assert memory.predict(items) == loaded.predict(items)


def moved_from(base_path, kept):
    """key -> whether the trained model's tensor differs from the base checkpoint's (same names: same class)."""
    base = kept["task"].model.auto_model.from_pretrained(base_path).state_dict()
    trained = kept["trainer"].model.state_dict()
    return lambda key: not torch.equal(base[key], trained[key])


# --- BitFit ----------------------------------------------------------------------------------------------------


def test_bitfit_text_learns_trains_only_biases_and_reloads(pretrained_bert, topic_data, tmp_path, kept):
    out = tmp_path / "bitfit"
    result = tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode="bitfit",
                                output_dir=str(out), learning_rate=1e-2, num_train_epochs=5, seed=3, **QUIET)
    assert result["eval_accuracy"] >= 0.9, result
    names = trainable(kept)
    assert names == bitfit_expected(kept)
    assert {"bert.encoder.layer.0.attention.self.query.bias", "bert.embeddings.LayerNorm.bias",
            "classifier.weight", "bert.pooler.dense.weight"} <= names
    assert not names & {"bert.encoder.layer.0.attention.self.query.weight", "bert.embeddings.LayerNorm.weight",
                        "bert.embeddings.word_embeddings.weight"}
    assert result["trainable_params"] == sum(p.numel() for n, p in kept["trainer"].model.named_parameters()
                                             if n in names)
    moved = moved_from(pretrained_bert, kept)
    assert moved("bert.encoder.layer.0.attention.self.query.bias")
    assert not moved("bert.encoder.layer.0.attention.self.query.weight")
    assert yaml.safe_load((out / "run_config.yaml").read_text())["mode"] == "bitfit"
    assert_reload_matches_memory(kept, out, TEXTS)
    plain = tunesuite.export(out, tmp_path / "exported")  # a plain checkpoint: re-saved, nothing to merge
    assert not (plain / "adapter_config.json").exists() and (plain / "model.safetensors").exists()


def _image_paths(image_data) -> list[str]:
    return [str(image_data / "test" / c / f"{i}.png") for c in CLASSES for i in range(2)]


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_bitfit_image_trains_only_biases_and_reloads(image_models, image_data, tmp_path, kept, arch):
    out = tmp_path / arch
    result = tunesuite.finetune("image-classification", str(image_models[arch]), str(image_data), mode="bitfit",
                                output_dir=str(out), learning_rate=1e-2, num_train_epochs=1,
                                per_device_train_batch_size=8, eval_strategy="no", seed=3, **QUIET)
    assert torch.isfinite(torch.tensor(result["train_loss"])) and result["train_loss"] > 0
    names = trainable(kept)
    assert names == bitfit_expected(kept)
    moved = moved_from(image_models[arch], kept)
    if arch == "vit":
        bias, weight = "vit.layers.0.attention.q_proj.bias", "vit.layers.0.attention.q_proj.weight"
        assert {"classifier.weight", "classifier.bias", "vit.embeddings.patch_embeddings.projection.bias"} <= names
        assert not names & {weight, "vit.embeddings.cls_token", "vit.embeddings.position_embeddings"}
    else:  # ResNet's convolutions have no bias: its BatchNorm biases train, and so BatchNorm runs in train mode
        norm = "resnet.encoder.stages.0.layers.0.layer.0.normalization"
        bias, weight = f"{norm}.bias", f"{norm}.weight"
        assert {"classifier.1.weight", "classifier.1.bias", bias} <= names
        assert not names & {weight, "resnet.encoder.stages.0.layers.0.layer.0.convolution.weight"}
        norms = [m for m in kept["trainer"].model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms and not any("train" in vars(m) for m in norms)  # none pinned to eval: each has a bias training
        assert moved(f"{norm}.running_mean")
    assert moved(bias) and not moved(weight)
    assert_reload_matches_memory(kept, out, _image_paths(image_data))


def test_bitfit_speech_trains_only_biases_and_reloads(tiny_w2v, tone_data, tmp_path, kept):
    out = tmp_path / "asr"
    result = tunesuite.finetune("asr", str(tiny_w2v), str(tone_data), mode="bitfit", output_dir=str(out),
                                learning_rate=1e-3, max_steps=4, per_device_train_batch_size=8, eval_strategy="no",
                                seed=SEED, **QUIET)
    assert torch.isfinite(torch.tensor(result["train_loss"])) and result["train_loss"] > 0
    names = trainable(kept)
    assert names == bitfit_expected(kept, frozen_prefix="wav2vec2.feature_extractor.")  # the conv front end stays
    layer, conv_norm = "wav2vec2.encoder.layers.0.attention.q_proj", "wav2vec2.feature_extractor.conv_layers.0"
    bias, weight, conv_norm = f"{layer}.bias", f"{layer}.weight", f"{conv_norm}.layer_norm.bias"
    assert {bias, "lm_head.weight", "lm_head.bias", "wav2vec2.feature_projection.projection.bias"} <= names
    assert not names & {weight, conv_norm, "wav2vec2.masked_spec_embed"}
    moved = moved_from(tiny_w2v, kept)
    assert moved(bias) and not moved(weight) and not moved(conv_norm)
    assert_reload_matches_memory(kept, out, [str(tone_data / "wavs" / f"test-{i}.wav") for i in range(4)])


# --- A mode registered from outside the package ------------------------------------------------------------------


@dataclass
class NormArgs:
    _argument_group_name = "mode norms"
    train_embeddings: bool = field(default=False, metadata={"help": "Also train the embeddings' LayerNorm."})


@pytest.fixture(scope="module")
def norms_mode():
    """`--mode norms`: LayerNorm weights and biases + the head; registered for this module's tests only."""
    from tunesuite.modes.freezing import freeze_all_but

    @tunesuite.register_mode("norms", help="LayerNorm weights + the head", learning_rate=1e-2, args=NormArgs)
    def norms(model, ctx):
        layer_norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)
                       and (ctx.args.train_embeddings or ".embeddings." not in f".{n}.")]
        freeze_all_but(model, [*ctx.head, *layer_norms])
        return model

    yield registry.modes()["norms"]
    registry.MODES.pop("norms")


def norms_expected(model, embeddings: bool) -> set[str]:
    task = tunesuite.TEXT_CLASSIFICATION
    norms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    names = {n for n, _ in model.named_parameters() if in_head(n, task) or n.rsplit(".", 1)[0] in norms}
    return {n for n in names if embeddings or not n.startswith("bert.embeddings.")}


def test_user_mode_is_in_help(norms_mode, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TUNESUITE_CACHE", str(tmp_path / "cache"))
    tunesuite.main(tunesuite.TEXT_CLASSIFICATION, ["--help"])
    text = capsys.readouterr().out
    choices = re.search(r"--mode \{([a-z0-9,_-]+)\}", text).group(1).split(",")
    assert "norms" in choices and {"full", "bitfit"} <= set(choices)
    assert "--train-embeddings" in text and "Also train the embeddings' LayerNorm." in text


def test_user_mode_trains_through_finetune_with_its_defaults(norms_mode, pretrained_bert, topic_data, tmp_path,
                                                               kept):
    out = tmp_path / "norms"
    result = tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode="norms",
                                train_embeddings=True, output_dir=str(out), max_steps=4, **QUIET)
    names = trainable(kept)
    assert names == norms_expected(kept["trainer"].model, embeddings=True)
    assert {"bert.embeddings.LayerNorm.weight", "bert.encoder.layer.0.attention.output.LayerNorm.bias",
            "classifier.weight"} <= names
    assert "bert.encoder.layer.0.attention.self.query.bias" not in names
    saved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert saved["mode"] == "norms" and saved["train_embeddings"] is True
    assert saved["learning_rate"] == norms_mode.learning_rate == 1e-2  # the Mode's default: none was given
    assert kept["trainer"].args.learning_rate == 1e-2
    assert json.loads((out / "all_results.json").read_text())["trainable_params"] == result["trainable_params"]
    assert_reload_matches_memory(kept, out, TEXTS)
    assert [set(p) >= {"label", "score"} for p in tunesuite.load(out).predict(TEXTS)] == [True] * 3
    plain = tunesuite.export(out, tmp_path / "exported")  # not mergeable, but a plain checkpoint: re-saved
    assert (plain / "model.safetensors").exists()


def test_user_mode_flag_through_the_command_line(norms_mode, pretrained_bert, topic_data, tmp_path, kept):
    from tunesuite.cli import parse_args

    common = ["--model", str(pretrained_bert), "--dataset", str(topic_data), "--mode", "norms"]
    out = tmp_path / "cli"
    tunesuite.main(tunesuite.TEXT_CLASSIFICATION, [*common, "--train-embeddings", "true", "--output-dir", str(out),
                                                   "--max-steps", "2", "--save-strategy", "no", "--disable-tqdm",
                                                   "true"])
    assert trainable(kept) == norms_expected(kept["trainer"].model, embeddings=True)
    assert yaml.safe_load((out / "run_config.yaml").read_text())["train_embeddings"] is True
    assert tunesuite.load(out).predict(TEXTS[:1])[0]["label"] in {"cooking", "music", "sport"}

    task = tunesuite.TEXT_CLASSIFICATION  # without the flag: the embeddings' LayerNorm stays frozen
    assert parse_args(task, [*common, "--output-dir", str(tmp_path / "plain")]).mode_args == NormArgs(
        train_embeddings=False)
    model = model_after_mode(task.name, pretrained_bert, topic_data, tmp_path / "plain", "norms")
    names = trainable_names(model)
    assert names == norms_expected(model, embeddings=False) and "bert.embeddings.LayerNorm.weight" not in names


# --- Export asks the Mode ----------------------------------------------------------------------------------------


def test_export_merges_what_the_mode_says_is_mergeable(tiny_bert, topic_data, tmp_path, monkeypatch):
    import dataclasses

    from tunesuite.publish.export import merge

    def run(mode: str):
        out = tmp_path / mode
        tunesuite.finetune("text-classification", str(tiny_bert), str(topic_data), mode=mode, output_dir=str(out),
                           max_steps=1, eval_strategy="no", **QUIET)
        return out

    lora, prompt = run("lora"), run("prompt")
    merged = merge(lora, tmp_path / "merged")
    assert (merged / "model.safetensors").exists() and not (merged / "adapter_config.json").exists()
    ours, theirs = tunesuite.load(lora).predict(TEXTS), tunesuite.load(merged).predict(TEXTS)
    assert [p["label"] for p in theirs] == [p["label"] for p in ours]
    assert [p["score"] for p in theirs] == pytest.approx([p["score"] for p in ours], abs=1e-5)
    mergeable = ", ".join(name for name, mode in registry.modes().items() if mode.mergeable)
    with pytest.raises(tunesuite.TunesuiteError, match=re.escape(f"only adapters of a mergeable mode ({mergeable}) "
                                                                 "can be merged; peft prompts need")):
        merge(prompt, tmp_path / "no")

    # on copies of the registry, so its order is untouched for the tests that follow
    modes = dict(registry.modes())
    monkeypatch.setattr(registry, "MODES", modes)
    modes["lora"] = dataclasses.replace(modes["lora"], mergeable=False)
    with pytest.raises(tunesuite.TunesuiteError, match="only adapters of a mergeable mode"):
        merge(lora, tmp_path / "refused")  # the registered Mode decides, not the model's attributes
    del modes["lora"]  # a mode this process does not know: judged from the model (LoRA merges)
    assert (merge(lora, tmp_path / "fallback") / "model.safetensors").exists()
    del modes["prompt"]
    with pytest.raises(tunesuite.TunesuiteError, match="peft prompts need tunesuite.load"):
        merge(prompt, tmp_path / "no-fallback")
