"""Leakage the exact check (train/duplicates.py) misses: rows of a later split (eval, test) that are nearly a row
of an earlier one, counted in the log with a warning and listed in OUT/near_duplicates.csv (split, row,
other_split, other_row, how, distance, similarity; similarity only for how=embedding, whose distance is 1 - it).

- text: equal once case, punctuation and whitespace are dropped ("Hello, World!" and "hello world", "U.S." and
  "US");
- text, by meaning (where the run's model can embed it): cosine similarity of at least --near-duplicate-similarity
  between the mean-pooled last hidden states (over the attention mask) of the run's own loaded model's encoder,
  before training, centred (the mean embedding of all rows compared taken off, given CENTRE_ROWS rows or more:
  a plain encoder's embeddings all point one way, so that unrelated texts would otherwise score 0.9 and more):
  paraphrase-like copies (a word swapped, the order changed). The first EMBED_ROWS rows of each split are embedded
  (the log says when a split is cut), in batches, in eval mode without gradients;
- images: a 64-bit difference hash (8x9 grey thumbnail, is each pixel brighter than its left neighbour?) within
  HASH_BITS bits: the same picture resized, re-encoded or slightly retouched. PIL and numpy only.

Rows the exact check already lists are left out here; images and audio are not embedded, and audio is compared
exactly only.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Image as ImageFeature

from tunesuite.config.resolve import RunConfig
from tunesuite.train.duplicates import IMAGE_SUFFIXES, ORDER, base_of, find, input_columns, listed, run_splits

log = logging.getLogger("tunesuite")
FILE = "near_duplicates.csv"
EMBED_ROWS = 1000  # rows of each split embedded at most (the first ones): the check stays cheap on a CPU
EMBED_BATCH = 32
EMBED_TOKENS = 64  # each text cut to this many tokens for its embedding
CENTRE_ROWS = 8  # fewer rows than this in all: too few for a mean to take off (compared uncentred)
HASH_BITS = 6  # at most this many of the 64 hash bits differ: the same picture (unrelated ones differ in ~32)
_NOT_WORD = re.compile(r"[\W_]+")
Pair = tuple[str, int, str, int, str, int]


def text_key(text: str) -> str:
    """Case, punctuation and whitespace dropped: the letters and digits in order ("U.S." and "US" alike)."""
    return _NOT_WORD.sub("", text.casefold())


def image_hash(image: Any) -> np.ndarray:
    """The difference hash of a PIL image: 64 bits as 8 bytes."""
    from PIL import Image

    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    return np.packbits((grey[:, 1:] > grey[:, :-1]).ravel())


def _open_image(value: Any, base: Path) -> Any | None:
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, Image.Image):
        return value
    source = value
    if isinstance(value, dict):
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    elif isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base / value
        try:
            source = path if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() else None
        except OSError:  # a text too long to be a file name
            source = None
    if source is None:
        return None
    try:
        with Image.open(source) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def split_features(split: Any, columns: list[str], base: Path) -> tuple[list[str] | None, np.ndarray | None]:
    """(text keys, or None when the inputs are not text; image hashes (rows x 8 bytes), or None)."""
    split = split.select_columns(columns)
    images = [c for c in columns if isinstance(split.features[c], ImageFeature)]
    for column in images:
        split = split.cast_column(column, ImageFeature(decode=False))
    first = split[0][columns[0]] if len(split) else None
    if not images and isinstance(first, str) and _open_image(first, base) is None:
        return [" | ".join(text_key(str(row[c])) for c in columns) for row in split], None
    column = images[0] if images else columns[0]
    if not images and not isinstance(first, str):
        return None, None  # audio or other values: the exact check covers them
    hashes = []
    for row in split:
        image = _open_image(row[column], base)
        hashes.append(image_hash(image) if image is not None else np.full(8, -1, dtype=np.int16))
    return None, np.array(hashes, dtype=np.int16)


def near_images(hashes: dict[str, np.ndarray], within: int = HASH_BITS) -> list[Pair]:
    """(split, row, other split, other row, "image hash", bits apart): each row of a later split whose hash lies
    within `within` bits of a row of an earlier split (the closest; an unreadable image matches nothing)."""
    found: list[Pair] = []
    names = [s for s in ORDER if s in hashes]
    for i, split in enumerate(names):
        earlier = [(other, row) for other in names[:i] for row in range(len(hashes[other]))]
        if not earlier or not len(hashes[split]):
            continue
        pool = np.concatenate([hashes[other] for other in names[:i]])
        pool_bits = np.unpackbits(pool.clip(0).astype(np.uint8), axis=1)
        bad_pool = (pool < 0).any(1)
        for start in range(0, len(hashes[split]), 256):  # 256 x pool bit matrices: memory stays small
            chunk = hashes[split][start:start + 256]
            bits = np.unpackbits(chunk.clip(0).astype(np.uint8), axis=1)
            apart = (bits[:, None, :] != pool_bits[None, :, :]).sum(-1)
            apart[:, bad_pool] = 65
            for offset, row in enumerate(apart):
                best = int(row.argmin())
                if row[best] <= within and not (chunk[offset] < 0).any():
                    found.append((split, start + offset, *earlier[best], "image hash", int(row[best])))
    return found


def near_texts(keys: dict[str, list[str]]) -> list[Pair]:
    return [(*pair, "text", 0) for pair in find(keys)]


def split_texts(split: Any, columns: list[str], limit: int = EMBED_ROWS) -> list[str | tuple[str, str]]:
    """The first `limit` rows' inputs as the tokenizer takes them: a text, or a (text, text) pair."""
    rows = split.select_columns(columns).select(range(min(limit, len(split))))
    if len(columns) == 2:
        return [(str(row[columns[0]]), str(row[columns[1]])) for row in rows]
    return [" ".join(str(row[c]) for c in columns) for row in rows]


def embed(texts: list[str | tuple[str, str]], model: Any, tokenizer: Any, batch: int = EMBED_BATCH) -> Any:
    """Unit-length embeddings (rows x hidden, float32 on the CPU): the model's encoder's last hidden state averaged
    over the attention mask, in eval mode without gradients (the model's train/eval state is put back)."""
    import torch
    import torch.nn.functional as F

    config = getattr(model, "config", None)
    encoder = model.get_encoder() if getattr(config, "is_encoder_decoder", False) else model.base_model
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(str(texts[i])))  # like lengths together: little padding
    pooled = torch.zeros(len(texts), model.config.hidden_size)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for start in range(0, len(order), batch):
                rows = order[start:start + batch]
                chunk = [texts[i] for i in rows]
                pairs = isinstance(chunk[0], tuple)
                inputs = tokenizer([t[0] for t in chunk] if pairs else chunk,
                                   [t[1] for t in chunk] if pairs else None, padding=True, truncation=True,
                                   max_length=EMBED_TOKENS, return_tensors="pt")
                mask = inputs["attention_mask"].to(device)
                hidden = encoder(input_ids=inputs["input_ids"].to(device), attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).to(torch.float32)
                pooled[rows] = ((hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1)).cpu()
    finally:
        encoder.train(was_training)
    return F.normalize(pooled, dim=-1)


def near_embeddings(vectors: dict[str, Any], threshold: float) -> list[Pair]:
    """(split, row, other split, other row, "embedding", 1 - similarity): each row of a later split whose
    embedding has cosine similarity >= threshold with a row of an earlier split (the most similar)."""
    import torch

    found: list[Pair] = []
    names = [s for s in ORDER if s in vectors]
    for i, split in enumerate(names):
        earlier = [(other, row) for other in names[:i] for row in range(len(vectors[other]))]
        if not earlier or not len(vectors[split]):
            continue
        pool = torch.cat([vectors[other] for other in names[:i]])
        for start in range(0, len(vectors[split]), 1024):
            best, at = (vectors[split][start:start + 1024] @ pool.T).max(1)
            for offset in torch.nonzero(best >= threshold).flatten().tolist():
                similarity = round(min(float(best[offset]), 1.0), 4)
                found.append((split, start + offset, *earlier[int(at[offset])], "embedding",
                              round(1 - similarity, 4)))
    return found


def embedding_pairs(splits: dict[str, Any], columns: dict[str, list[str]], model: Any, tokenizer: Any,
                    threshold: float | None) -> list[Pair]:
    """The embedding check on the text splits (none without a model, a tokenizer or a threshold > 0)."""
    if not threshold or model is None or not callable(tokenizer) or len(splits) < 2:
        return []
    vectors = {}
    try:
        for name, split in splits.items():
            if len(split) > EMBED_ROWS:
                log.info("near-duplicates by embedding: the first %s of %s %s rows compared", f"{EMBED_ROWS:,}",
                         f"{len(split):,}", name)
            vectors[name] = embed(split_texts(split, columns[name], EMBED_ROWS), model, tokenizer)
    except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as e:  # a model we cannot pool
        log.info("near-duplicates by embedding: not checked (%s: %s)", type(e).__name__, e)
        return []
    return near_embeddings(centred(vectors), threshold)


def centred(vectors: dict[str, Any]) -> dict[str, Any]:
    """Unit rows with the mean of all rows taken off (unchanged below CENTRE_ROWS rows). Measured with 0.95: the
    real MiniLM-L6 scores paraphrase pairs 0.98 and unrelated sentences below 0.2 either way; a random tiny BERT
    scores paraphrases 0.996+ either way, unrelated rows up to 0.98 uncentred and 0.77 centred."""
    import torch
    import torch.nn.functional as F

    if sum(len(v) for v in vectors.values()) < CENTRE_ROWS:
        return vectors
    mean = torch.cat(list(vectors.values())).mean(0)
    return {name: F.normalize(v - mean, dim=-1) for name, v in vectors.items()}


def check(splits: dict[str, Any], columns: dict[str, list[str]], base: Path, out: Path,
          exact: list[tuple[str, int, str, int]], model: Any = None, tokenizer: Any = None,
          similarity: float | None = None) -> list[Pair]:
    """Near-duplicates across `splits` not already in `exact` (nor listed by an earlier way: text, image hash,
    then embedding, the last only given a model, its tokenizer and a similarity > 0); warn and write
    OUT/near_duplicates.csv when any."""
    texts, hashes = {}, {}
    for name, split in splits.items():
        keys, image_hashes = split_features(split, columns[name], base)
        if keys is not None:
            texts[name] = keys
        if image_hashes is not None:
            hashes[name] = image_hashes
    known = {(s, r) for s, r, _, _ in exact}
    found = [p for p in [*near_texts(texts), *near_images(hashes)] if (p[0], p[1]) not in known]
    known |= {(p[0], p[1]) for p in found}
    text_splits = {name: splits[name] for name in texts}
    found += [p for p in embedding_pairs(text_splits, columns, model, tokenizer, similarity)
              if (p[0], p[1]) not in known]
    (out / FILE).unlink(missing_ok=True)  # an earlier run's list never outlives its data
    if not found:
        return []
    counts: dict[tuple[str, str, str], int] = {}
    for split, _, other, _, how, _ in found:
        counts[(split, other, how)] = counts.get((split, other, how), 0) + 1
    said = ", ".join(f"{n:,} {s} rows of {len(splits[s]):,} nearly in {o} ({how})" for (s, o, how), n in counts.items())
    listed(out / FILE, ["split", "row", "other_split", "other_row", "how", "distance", "similarity"],
           [[*p, f"{1 - p[5]:.4f}" if p[4] == "embedding" else ""] for p in found], "near-duplicates", said)
    return found


def check_run(raw: Any, cfg: RunConfig, out: Path, exact: list[tuple[str, int, str, int]], model: Any = None,
              tokenizer: Any = None) -> list[Pair]:
    """The check on a run's splits (the recipe calls it after the exact one, whose rows it leaves out, with the
    loaded model before its mode is applied)."""
    splits = run_splits(raw, cfg)
    if len(splits) < 2:
        return []
    return check(splits, {name: input_columns(split, cfg) for name, split in splits.items()}, base_of(cfg), out, exact,
                 model, tokenizer, cfg.data.near_duplicate_similarity)
