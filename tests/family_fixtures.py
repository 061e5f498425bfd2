"""Tiny config-built checkpoints of many model families (text, image, speech), built once per session on demand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TEXT, IMAGE, SPEECH = "text-classification", "image-classification", "asr"
_SMALL = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
_SPEECH = {"hidden_size": 32, **_SMALL, "num_feat_extract_layers": 3, "conv_dim": (16, 32, 32),
           "conv_kernel": (10, 4, 4), "conv_stride": (5, 4, 4), "num_conv_pos_embeddings": 8,
           "num_conv_pos_embedding_groups": 4, "feat_extract_norm": "layer", "do_stable_layer_norm": True,
           "layerdrop": 0.0, "mask_time_prob": 0.0}
_VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}


def _configs(vocab: int) -> dict[str, tuple[str, str, dict]]:
    """family -> (task, config class, config keywords)."""
    text = {"vocab_size": vocab, "hidden_size": 32, **_SMALL, "max_position_embeddings": 64, "pad_token_id": 0}
    return {
        "bert": (TEXT, "BertConfig", text),
        "roberta": (TEXT, "RobertaConfig", {**text, "max_position_embeddings": 66, "type_vocab_size": 1}),
        "distilbert": (TEXT, "DistilBertConfig", {"vocab_size": vocab, "dim": 32, "n_layers": 2, "n_heads": 2,
                                                  "hidden_dim": 64, "max_position_embeddings": 64, "pad_token_id": 0}),
        "deberta-v2": (TEXT, "DebertaV2Config", {**text, "relative_attention": False, "pooler_hidden_size": 32}),
        "electra": (TEXT, "ElectraConfig", {**text, "embedding_size": 16}),
        "albert": (TEXT, "AlbertConfig", {**text, "embedding_size": 16}),
        "vit": (IMAGE, "ViTConfig", {**_VIT, "intermediate_size": 64}),
        "deit": (IMAGE, "DeiTConfig", {**_VIT, "intermediate_size": 64}),
        "dinov2": (IMAGE, "Dinov2Config", {**_VIT, "mlp_ratio": 2}),
        "swin": (IMAGE, "SwinConfig", {"image_size": 32, "patch_size": 4, "embed_dim": 16, "depths": [1, 1],
                                       "num_heads": [2, 2], "window_size": 4}),
        "convnext": (IMAGE, "ConvNextConfig", {"num_stages": 2, "hidden_sizes": [16, 32], "depths": [1, 1]}),
        "resnet": (IMAGE, "ResNetConfig", {"embedding_size": 16, "hidden_sizes": [16, 32], "depths": [1, 1],
                                           "layer_type": "basic"}),
        "wav2vec2": (SPEECH, "Wav2Vec2Config", _SPEECH),
        "hubert": (SPEECH, "HubertConfig", _SPEECH),
        "wavlm": (SPEECH, "WavLMConfig", _SPEECH),
    }


FAMILY_TASKS = {name: spec[0] for name, spec in _configs(1).items()}


def _build(name: str, folder: Path) -> Path:
    import torch
    import transformers
    from image_fixtures import SIZE, SOURCE_LABELS

    from tunesuite.tasks import ctc

    torch.manual_seed(int(os.environ.get("TUNESUITE_TEST_SEED", "0")))
    if FAMILY_TASKS[name] == TEXT:
        from conftest import FILLER, WORDS

        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *sum(WORDS.values(), [])]
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
        # One word-level BERT tokenizer for every family (AutoTokenizer reads its class from tokenizer_config);
        # DistilBERT takes no token_type_ids.
        inputs = {"model_input_names": ["input_ids", "attention_mask"]} if name == "distilbert" else {}
        transformers.BertTokenizerFast(str(folder / "vocab.txt"), **inputs).save_pretrained(folder)
        task, cls, kwargs = _configs(len(vocab))[name]
        config = getattr(transformers, cls)(**kwargs)
        transformers.AutoModelForSequenceClassification.from_config(config).base_model.save_pretrained(folder)
        return folder
    task, cls, kwargs = _configs(0)[name]
    if task == IMAGE:
        from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

        config = getattr(transformers, cls)(**kwargs, **SOURCE_LABELS)
        classes = transformers.AutoModelForImageClassification._model_mapping[type(config)]
        (classes[0] if isinstance(classes, tuple) else classes)(config).save_pretrained(folder)  # DeiT: two classes
        ViTImageProcessorPil(size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
        return folder
    from asr_fixtures import MODEL_LETTERS, RATE

    tokenizer = ctc.make_tokenizer(ctc.build_vocab([MODEL_LETTERS]))
    config = getattr(transformers, cls)(**kwargs, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    transformers.AutoModelForCTC.from_config(config).save_pretrained(folder)
    features = transformers.Wav2Vec2FeatureExtractor(sampling_rate=RATE, do_normalize=True, return_attention_mask=True)
    transformers.Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def family_model(tmp_path_factory):
    """family_model(name) -> the folder of a tiny checkpoint of that family, built on first use."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = _build(name, tmp_path_factory.mktemp(f"family-{name}"))
        return built[name]

    return get


@pytest.fixture(scope="session")
def family_data(tmp_path_factory):
    """Tiny data per task: topic texts, colour images, tone speech."""
    from asr_fixtures import write_tone_corpus
    from conftest import write_topic_csvs
    from image_fixtures import write_image_folder

    root = tmp_path_factory.mktemp("family-data")
    return {TEXT: write_topic_csvs(root / "text", n_train=16, n_eval=6),
            IMAGE: write_image_folder(root / "images", {"train": 4, "validation": 1, "test": 2}),
            SPEECH: write_tone_corpus(root / "speech", {"train": 8, "validation": 2, "test": 3})}
