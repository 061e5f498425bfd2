"""Zero-shot beyond text: Whisper spots keywords by its decoder's likelihood of each class's text, a CLIP-style
model scores images against its text tower's prompt embeddings. Both against the checkpoint's own forward pass,
weights byte-identical, and a finished run loads and predicts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from audio_fixtures import PITCHES, pitch_clip, write_pitch_csvs
from image_fixtures import CLASSES, make_image, write_image_folder
from safetensors.torch import load_file
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

import tunesuite
from tunesuite.errors import TunesuiteError

FAST = {"per_device_eval_batch_size": 4, "disable_tqdm": True, "do_predict": True}


def _same_weights(saved: dict[str, torch.Tensor], base: dict[str, torch.Tensor], prefix: str) -> int:
    """How many of `base`'s tensors whose names start with `prefix` `saved` holds byte-identical (all, or it fails)."""
    wanted = {k: v for k, v in base.items() if k.startswith(prefix)}
    assert wanted
    for name, tensor in wanted.items():
        assert torch.equal(saved[name], tensor), name
    return len(wanted)


@pytest.fixture(scope="module")
def pitch_words(tmp_path_factory) -> Path:
    return write_pitch_csvs(tmp_path_factory.mktemp("zero-pitches"), {"train": 3, "validation": 3, "test": 6})


def _direct_scores(model_path: Path, clips: list, texts: list[str]) -> torch.Tensor:
    """Mean log-probability per token of ' text' + end, after start and no-timestamps: the full model's forward."""
    from transformers import AutoProcessor, WhisperForConditionalGeneration

    processor, model = AutoProcessor.from_pretrained(model_path), WhisperForConditionalGeneration.from_pretrained(
        model_path).eval()
    generation = model.generation_config
    start = [generation.decoder_start_token_id, generation.no_timestamps_token_id]
    features = processor(clips, sampling_rate=16000, return_tensors="pt")["input_features"]
    scores = torch.zeros(len(clips), len(texts))
    for j, text in enumerate(texts):
        target = processor.tokenizer(" " + text, add_special_tokens=False)["input_ids"] + [generation.eos_token_id]
        ids = torch.tensor([start + target[:-1]] * len(clips))
        with torch.no_grad():
            logits = model(input_features=features, decoder_input_ids=ids).logits[:, len(start) - 1:]
        picked = logits.log_softmax(-1).gather(-1, torch.tensor([target] * len(clips)).unsqueeze(-1))
        scores[:, j] = picked.squeeze(-1).mean(1)
    return scores


def test_whisper_zero_shot_scores_each_class_text_by_decoder_likelihood(tiny_whisper_model, pitch_words,  # noqa: F811
                                                                         tmp_path, log):
    out = tmp_path / "zero"
    result = tunesuite.finetune("audio-classification", str(tiny_whisper_model), str(pitch_words), mode="zero-shot",
                                output_dir=str(out), **FAST)
    assert "zero-shot (decoder): 3 class texts" in log.text
    assert result["trainable_params"] == 0 and "train_loss" not in result
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 0
    base, saved = load_file(tiny_whisper_model / "model.safetensors"), load_file(out / "model.safetensors")
    _same_weights({k.replace("encoder.", "model.encoder.", 1): v for k, v in saved.items()}, base, "model.encoder.")
    decoder = {k.replace("scorer.decoder.", "model.decoder."): v for k, v in saved.items()
               if k.startswith("scorer.decoder.")}
    _same_weights(decoder, base, "model.decoder.")
    predictor = tunesuite.load(out)
    clips = [pitch_clip(PITCHES[name], random.Random(i)) for i, name in enumerate(PITCHES)]
    names = [json.loads((out / "config.json").read_text())["id2label"][str(i)] for i in range(3)]
    torch.testing.assert_close(predictor.logits(clips), _direct_scores(tiny_whisper_model, clips, names),
                               atol=1e-4, rtol=1e-4)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["label"] for p in predictor.predict([pitch_words / r["path"] for r in rows])] == \
        [r["label"] for r in rows]


def test_zero_shot_refuses_an_audio_model_without_a_decoder(tiny_w2v, pitch_words, tmp_path):
    with pytest.raises(TunesuiteError, match="no text side.*Whisper.*CLIP"):
        tunesuite.finetune("audio-classification", str(tiny_w2v), str(pitch_words), mode="zero-shot",
                           output_dir=str(tmp_path / "out"), **FAST)


def _clip_tokenizer(folder: Path):
    """A tiny CLIP BPE tokenizer: letters (word-final and not), a few merges, the two special tokens."""
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = [*letters, *(c + "</w>" for c in letters), "re", "red</w>", "gr", "blue</w>", "<|startoftext|>",
             "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\nr e\nre d</w>\ng r\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """A random CLIPModel (1-layer towers, 32x32 images) with its processor: image processor + tiny tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    path = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = _clip_tokenizer(path)
    ends = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    config = CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "vocab_size": len(tokenizer),
                                     "max_position_embeddings": 16, **ends},
                        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                        projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)
    return path


def test_clip_zero_shot_gives_the_models_own_logits_per_image(tiny_clip, tmp_path, log):
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    data = write_image_folder(tmp_path / "images", {"train": 1, "validation": 1, "test": 2})
    out = tmp_path / "zero"
    result = tunesuite.finetune("image-classification", str(tiny_clip), str(data), mode="zero-shot",
                                output_dir=str(out), **FAST)
    assert "zero-shot (image-text): 3 class texts, e.g. 'a photo of a blue.'" in log.text
    assert result["trainable_params"] == 0 and "weights_sha256" in result
    _same_weights(load_file(out / "model.safetensors"), load_file(tiny_clip / "model.safetensors"), "vision_model.")
    images = [Image.fromarray(make_image(random.Random(i), name)) for i, name in enumerate(CLASSES)]
    names = [json.loads((out / "config.json").read_text())["id2label"][str(i)] for i in range(3)]
    processor, model = CLIPProcessor.from_pretrained(tiny_clip), CLIPModel.from_pretrained(tiny_clip).eval()
    inputs = processor(text=[f"a photo of a {n}." for n in names], images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = model(**inputs).logits_per_image
    torch.testing.assert_close(tunesuite.load(out).logits(images), expected, atol=1e-4, rtol=1e-4)


def test_whisper_prefix_follows_the_generation_config():
    """English-only: start, no-timestamps; multilingual: start, its language (English when it names none), task,
    no-timestamps; a language its table lacks is one error line."""
    from transformers import GenerationConfig

    from tunesuite.modes.speech_scorer import prefix

    english = GenerationConfig(decoder_start_token_id=1, no_timestamps_token_id=9)
    assert prefix(english) == [1, 9]
    many = GenerationConfig(decoder_start_token_id=1, no_timestamps_token_id=9, is_multilingual=True,
                            lang_to_id={"<|en|>": 2, "<|fr|>": 3}, task_to_id={"transcribe": 5, "translate": 6})
    assert prefix(many) == [1, 2, 5, 9]
    many.language, many.task = "fr", "translate"
    assert prefix(many) == [1, 3, 6, 9]
    many.language = "de"
    with pytest.raises(TunesuiteError, match="language 'de'.* lacks"):
        prefix(many)
