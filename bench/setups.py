"""What the benchmark trains: small models built from configs (as the tests build them) and the real MiniLM.

Each setup writes its model and data once under the work folder and reuses them on later runs. Data comes
from the test helpers (tests/*_fixtures.py, tests/conftest.py), so the bench trains on what the tests train on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test helpers that generate data

MODES = ("full", "frozen", "lora", "prompt")

# Model sizes: "quick" are the test suite's tiny models; "small" are a few times larger, so a step does real work.
SIZES = {
    "quick": {"bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
              "vit": dict(patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64),
              "resnet": dict(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1]),
              "w2v": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(16, 32, 32), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4)),
              "rows": {"text": 96, "image": 16, "audio": 48}},
    "small": {"bert": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
              "vit": dict(patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                          intermediate_size=256),
              "resnet": dict(embedding_size=32, hidden_sizes=[32, 64, 128], depths=[1, 1, 1]),
              # 320 samples per frame (50 frames/s), like wav2vec2-base
              "w2v": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
                          conv_dim=(64, 64, 64, 64), conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 4)),
              "rows": {"text": 480, "image": 160, "audio": 400}},
}
IMAGE_SIZE, RATE = 32, 16000
ASR_LETTERS = "abcdefghijklmnopqrstuvwxyz'"  # an English-sized CTC vocabulary (the tone data uses a-e)
EVAL_EXTRA_SYMBOLS = 500  # the eval-memory model's vocabulary: logits large enough to see what piles up


@dataclass(frozen=True)
class Setup:
    name: str
    task: str
    label: str
    build: Callable[[Path, dict], tuple[Path, Path]]  # (folder, sizes) -> (model dir, data dir)
    bare_modes: tuple[str, ...]  # modes with a natural bare-transformers equivalent
    flags: dict = field(default_factory=dict)  # extra suite flags for this setup
    step_scale: float = 1.0  # fraction of --steps this setup measures (slow models take fewer, longer steps)
    max_repeats: int | None = None  # at most this many suite/bare rounds (long steps vary less)


def _done(folder: Path) -> bool:
    return (folder / ".done").exists()


def _mark(folder: Path) -> None:
    (folder / ".done").write_text("ok\n")


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def build_bert(folder: Path, sizes: dict) -> tuple[Path, Path]:
    """A BERT with the tests' word vocabulary, saved as a backbone (a Hub BERT without a head), + topic CSVs."""
    from conftest import FILLER, WORDS, write_topic_csvs

    model, data = folder / "model", folder / "data"
    if not _done(folder):
        from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

        _seed()
        model.mkdir(parents=True, exist_ok=True)
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *sum(WORDS.values(), [])]
        (model / "vocab.txt").write_text("\n".join(vocab) + "\n")
        BertTokenizerFast.from_pretrained(model).save_pretrained(model)
        config = BertConfig(vocab_size=len(vocab), max_position_embeddings=64, **sizes["bert"])
        BertForSequenceClassification(config).base_model.save_pretrained(model)
        write_topic_csvs(data, n_train=sizes["rows"]["text"], n_eval=16)
        _mark(folder)
    return model, data


def build_minilm(folder: Path, sizes: dict) -> tuple[Path, Path]:
    """The real pretrained MiniLM-L6 and Debian's fortunes, four topics (the text demo's data)."""
    from tunesuite.demos.corpora import minilm_path, write_fortunes_dataset

    data = folder / "data"
    if not _done(folder):
        write_fortunes_dataset(data)
        _mark(folder)
    return Path(minilm_path()), data


def _image_data(folder: Path, sizes: dict) -> Path:
    from image_fixtures import write_image_folder

    data = folder.parent / "images"
    if not _done(data):
        write_image_folder(data, {"train": sizes["rows"]["image"], "validation": 4, "test": 4})
        _mark(data)
    return data


SOURCE_LABELS = {"id2label": {i: f"source{i}" for i in range(4)}, "label2id": {f"source{i}": i for i in range(4)}}


def build_vit(folder: Path, sizes: dict) -> tuple[Path, Path]:
    """A ViT for 32x32 images with a 4-class head (the 3-class data gets a new one), as tests/image_fixtures.py."""
    model = folder / "model"
    if not _done(folder):
        from transformers import ViTConfig, ViTForImageClassification
        from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

        _seed()
        config = ViTConfig(image_size=IMAGE_SIZE, **sizes["vit"], **SOURCE_LABELS)
        ViTForImageClassification(config).save_pretrained(model)
        ViTImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(model)
        _mark(folder)
    return model, _image_data(folder, sizes)


def build_resnet(folder: Path, sizes: dict) -> tuple[Path, Path]:
    """A ResNet (basic blocks) with a 4-class head and ResNet's usual processor, as tests/image_fixtures.py."""
    model = folder / "model"
    if not _done(folder):
        from transformers import ResNetConfig, ResNetForImageClassification
        from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil

        _seed()
        config = ResNetConfig(layer_type="basic", **sizes["resnet"], **SOURCE_LABELS)
        ResNetForImageClassification(config).save_pretrained(model)
        ConvNextImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_pct=0.875).save_pretrained(model)
        _mark(folder)
    return model, _image_data(folder, sizes)


def build_w2v_model(model: Path, sizes: dict, extra_symbols: int = 0) -> Path:
    """A wav2vec2 CTC model (layer-norm feature encoder, so batches carry attention masks), as asr_fixtures.py.

    `extra_symbols` CJK characters enlarge the vocabulary (Chinese character CTC models have thousands)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

    from tunesuite.tasks import ctc

    symbols = ASR_LETTERS + "".join(chr(0x4E00 + i) for i in range(extra_symbols))
    tokenizer = ctc.make_tokenizer(ctc.build_vocab([symbols]))
    _seed()
    w2v = sizes["w2v"]
    config = Wav2Vec2Config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_feat_extract_layers=len(w2v["conv_dim"]),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
        do_stable_layer_norm=True, layerdrop=0.0, mask_time_prob=0.0, **w2v)
    Wav2Vec2ForCTC(config).save_pretrained(model)
    features = Wav2Vec2FeatureExtractor(sampling_rate=RATE, do_normalize=True, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(model)
    return model


def build_w2v(folder: Path, sizes: dict) -> tuple[Path, Path]:
    """The wav2vec2 model and tone speech (tests/asr_fixtures.py): a letter is a sine at its own pitch."""
    from asr_fixtures import write_tone_corpus

    model, data = folder / "model", folder / "data"
    if not _done(folder):
        build_w2v_model(model, sizes)
        write_tone_corpus(data, {"train": sizes["rows"]["audio"], "validation": 8, "test": 8})
        _mark(folder)
    return model, data


def eval_corpus(folder: Path, rows: int) -> Path:
    """Tone speech with a `rows`-utterance validation split, for the evaluation-memory measurement."""
    from asr_fixtures import write_tone_corpus

    data = folder / f"eval-{rows}"
    if not _done(data):
        write_tone_corpus(data, {"train": 16, "validation": rows}, seed=1)
        _mark(data)
    return data


TEXT_BARE, OTHER_BARE = ("full", "frozen", "lora", "prompt"), ("full", "frozen", "lora")
SETUPS = {s.name: s for s in (
    Setup("bert", "text-classification", "BERT (config)", build_bert, TEXT_BARE),
    Setup("minilm", "text-classification", "MiniLM-L6 (real)", build_minilm, TEXT_BARE, step_scale=0.5, max_repeats=2),
    Setup("vit", "image-classification", "ViT (config)", build_vit, OTHER_BARE),
    Setup("resnet", "image-classification", "ResNet (config)", build_resnet, OTHER_BARE),
    Setup("w2v", "asr", "wav2vec2 (config)", build_w2v, OTHER_BARE),
)}
TASK_SETUPS = {"text": ("bert", "minilm"), "image": ("vit", "resnet"), "asr": ("w2v",)}


def prepare(name: str, work: Path, size: str) -> tuple[Path, Path]:
    """(model dir, data dir) of a setup, built on first use under work/size/name."""
    return SETUPS[name].build(work / size / name, SIZES[size])
