"""Image classification beyond the task x mode matrix (test_matrix.py): exact trainable names per model and flag,
prompts saved, frozen BatchNorm statistics, new label sets, and full / frozen / merged-LoRA runs in
transformers.pipeline() with the same top-1."""

from __future__ import annotations

import json

import pytest
import torch
from image_fixtures import CLASSES

import tunesuite

MODELS = ("vit", "resnet")
HEAD = {"vit": "classifier", "resnet": "classifier.1"}


@pytest.fixture
def runs(trained):
    """(arch, mode) -> (result, out): the matrix's runs (test_matrix.py), trained once per session."""

    def get(arch: str, mode: str):
        run = trained(f"image-{arch}", mode)
        return run.result, run.out

    return get


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("arch", MODELS)
def test_prompts_are_saved_and_matter(runs, arch, tmp_path):
    from transformers import AutoModelForImageClassification

    from tunesuite.publish.export import merge

    _, out = runs(arch, "prompt")
    with pytest.raises(tunesuite.TunesuiteError, match="prompt runs cannot be exported"):
        merge(out, tmp_path / "merged")
    predictor = tunesuite.load(out)
    names = {n for n, _ in predictor.model.prompt.named_parameters()}
    assert names == ({"tokens"} if arch == "vit" else {"top", "bottom", "left", "right"})
    paths = [r["image"] for r in _rows(out)]
    plain = AutoModelForImageClassification.from_pretrained(out).eval()  # the same weights, no prompts
    with torch.no_grad():
        without = plain(**tunesuite.IMAGE_CLASSIFICATION.data.make_batch(predictor.processor, paths, None)).logits
    assert not torch.allclose(without, predictor.logits(paths), atol=1e-4)


@pytest.mark.parametrize("mode", ["full", "frozen", "lora"])
@pytest.mark.parametrize("arch", MODELS)
def test_pipeline_gives_the_suite_top1(runs, arch, mode, tmp_path):
    from transformers import pipeline

    from tunesuite.publish.export import merge

    _, out = runs(arch, mode)
    path = merge(out, tmp_path / "merged") if mode == "lora" else out
    assert not (path / "adapter_config.json").exists()
    paths = [r["image"] for r in _rows(out)]
    ours = tunesuite.predict(out, paths)
    theirs = pipeline("image-classification", model=str(path), device="cpu")(paths, top_k=1)
    assert [t[0]["label"] for t in theirs] == [o["label"] for o in ours]
    assert [t[0]["score"] for t in theirs] == pytest.approx([o["score"] for o in ours], abs=1e-4)


def test_frozen_resnet_keeps_batchnorm_statistics(runs, image_models):
    """Frozen BatchNorm layers stay in eval mode through Trainer.train(): running statistics unchanged."""
    from safetensors.torch import load_file

    before = load_file(image_models["resnet"] / "model.safetensors")
    frozen = load_file(runs("resnet", "frozen")[1] / "model.safetensors")
    full = load_file(runs("resnet", "full")[1] / "model.safetensors")
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 12
    assert all(torch.equal(before[k], frozen[k]) for k in stats)
    assert not any(torch.equal(before[k], full[k]) for k in stats)  # full fine-tuning does update them


def _prepared_model(model_path, image_data, tmp_path, mode, *extra):
    from tunesuite.cli import parse_args
    from tunesuite.train.recipe import apply_mode, load_model

    task = tunesuite.IMAGE_CLASSIFICATION
    cfg = parse_args(task, ["--model", str(model_path), "--dataset", str(image_data), "--mode", mode,
                            "--output-dir", str(tmp_path), *extra])
    labels = {"num_labels": 3, "id2label": dict(enumerate(CLASSES)), "label2id": {c: i for i, c in enumerate(CLASSES)}}
    model, head = load_model(task, cfg, labels)
    model = apply_mode(model, task, cfg, head)
    return {n for n, p in model.named_parameters() if p.requires_grad}, model


def _lora_names(arch: str, model) -> set[str]:
    modules = {n for n, _ in model.named_modules()}
    if arch == "vit":
        adapted = {f"base_model.model.vit.layers.{i}.attention.{m}" for i in (0, 1) for m in ("q_proj", "v_proj")}
    else:
        adapted = {n.rsplit(".lora_A", 1)[0] for n in modules if n.endswith("convolution.lora_A")}
        assert len(adapted) == 6  # stem + 2 + 3 (stage 2 has a projection shortcut)
    copy = "base_model.model.classifier.modules_to_save.default." + ("1." if arch == "resnet" else "")
    return {f"{m}.lora_{ab}.default.weight" for m in adapted for ab in "AB"} | {copy + "weight", copy + "bias"}


@pytest.mark.parametrize("arch", MODELS)
def test_trainable_parameters_by_mode(image_models, image_data, tmp_path, arch):
    from tunesuite.modes import layer_stack

    path, head = image_models[arch], {f"{HEAD[arch]}.weight", f"{HEAD[arch]}.bias"}
    full, model = _prepared_model(path, image_data, tmp_path, "full")
    assert full == {n for n, _ in model.named_parameters()}

    frozen, model = _prepared_model(path, image_data, tmp_path, "frozen")
    assert frozen == head

    stack = {"vit": "vit.layers", "resnet": "resnet.encoder.stages"}[arch]
    assert layer_stack(model)[0] == stack
    top1, _ = _prepared_model(path, image_data, tmp_path, "frozen", "--trainable-layers", "1")
    top = {n for n in full if n.startswith(f"{stack}.1.")}
    assert top and top1 == head | top

    lora, model = _prepared_model(path, image_data, tmp_path, "lora")
    assert lora == _lora_names(arch, model)

    prompt, model = _prepared_model(path, image_data, tmp_path, "prompt", "--num-virtual-tokens", "3",
                                    "--prompt-depth", "deep", "--prompt-pad", "2")
    assert prompt == head | ({"prompt.tokens"} if arch == "vit" else {f"prompt.{s}" for s in
                                                                       ("top", "bottom", "left", "right")})
    if arch == "vit":  # deep: fresh tokens for each of the 2 layers; shallow: one set, at the first
        assert tuple(model.prompt.tokens.shape) == (2, 3, 32)
        with torch.no_grad():
            hidden = model(pixel_values=torch.zeros(2, 3, 32, 32), output_hidden_states=True).hidden_states
        assert hidden[-1].shape[1] == 1 + 3 + 16  # [CLS] + prompts + 4x4 patches
        _, model = _prepared_model(path, image_data, tmp_path, "prompt", "--num-virtual-tokens", "3")
        assert tuple(model.prompt.tokens.shape) == (1, 3, 32)
    else:
        assert tuple(model.prompt.top.shape) == (1, 3, 2, 32)


@pytest.mark.parametrize("arch", MODELS)
def test_default_lora_targets_name_real_modules(image_models, arch):
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(image_models[arch])
    targets = tunesuite.registry.find_family(model.config.model_type).lora_targets
    linear_or_conv = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                      if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    assert set(targets) <= linear_or_conv


def test_new_label_set_replaces_the_head(image_models, image_data, tmp_path):
    """4 source classes -> 3 new ones: a new head. 3 other named classes: re-initialised too. The same 3: kept."""
    from transformers import ViTForImageClassification

    _, model = _prepared_model(image_models["vit"], image_data, tmp_path, "full")
    assert model.config.id2label == dict(enumerate(CLASSES)) and model.classifier.out_features == 3
    for names, kept in ((("cat", "dog", "cow"), False), (CLASSES, True)):
        path = tmp_path / "-".join(names)
        labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
        ViTForImageClassification.from_pretrained(image_models["vit"], ignore_mismatched_sizes=True,
                                                  **labels).save_pretrained(path)
        (path / "preprocessor_config.json").write_bytes((image_models["vit"] / "preprocessor_config.json").read_bytes())
        saved = ViTForImageClassification.from_pretrained(path)
        _, model = _prepared_model(path, image_data, tmp_path, "full")
        assert torch.equal(model.classifier.weight, saved.classifier.weight) == kept
        assert torch.equal(model.vit.layers[0].attention.q_proj.weight, saved.vit.layers[0].attention.q_proj.weight)
