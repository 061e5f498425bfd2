"""Images with PIL only: open any reference (path, bytes, PIL image), convert to RGB, check, augment."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tunesuite.errors import TunesuiteError

# What PIL raises for a missing, unreadable, truncated or malformed file.
READ_ERRORS = (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError)
HINT = "fix or remove the file, or pass --skip-bad-files"


def _in_memory(ref: Any) -> bool:
    return isinstance(ref, dict) and bool(ref.get("bytes"))


def resolve_path(ref: Any, base: Path | None) -> str | None:
    """The file an image reference points at (joined to `base` when relative); None for in-memory images."""
    if isinstance(ref, dict):
        ref = ref.get("path")
    if not isinstance(ref, (str, Path)):
        return None
    path = Path(ref).expanduser()
    return str(base / path if base is not None and not path.is_absolute() else path)


def _problem(ref: Any, base: Path | None, where: str, error: Exception | str) -> str:
    """One line naming the image (its file; for images stored in the dataset, its row) and what is wrong."""
    path = resolve_path(ref, base)
    name = f"{where} ({path})" if _in_memory(ref) and path and where else path or where or "image"
    text = error if isinstance(error, str) else " ".join(str(error).split()) or type(error).__name__
    return f"cannot read image {name}: {text}"


def _open(ref: Any, base: Path | None) -> Image.Image:
    if isinstance(ref, Image.Image):
        return ref
    if isinstance(ref, np.ndarray):
        return _from_array(ref)
    if ref is None or ref == "":
        raise FileNotFoundError("empty cell, no image")
    if _in_memory(ref):
        return Image.open(io.BytesIO(ref["bytes"]))
    path = resolve_path(ref, base)
    if path is None:
        raise TypeError(f"expected an image file path or image, got {type(ref).__name__}")
    if not Path(path).is_file():
        raise FileNotFoundError("file not found")
    return Image.open(path)


def _from_array(pixels: np.ndarray) -> Image.Image:
    """An array as an image: height x width, with or without a channel axis last (or first, as torch keeps it:
    1, 3 or 4 channels); floats in [0, 1] scaled to 0-255, larger floats taken as 0-255."""
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3, 4) and pixels.shape[-1] not in (1, 3, 4):
        pixels = pixels.transpose(1, 2, 0)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype.kind in "fb":
        pixels = pixels.astype(np.float64)
        scale = 255.0 if pixels.size and pixels.max() <= 1.0 else 1.0
        pixels = np.clip(pixels * scale, 0, 255).round().astype(np.uint8)
    return Image.fromarray(pixels)


def to_8bit(picture: Image.Image) -> Image.Image:
    """16/32-bit grayscale (PIL modes I;16*, I, F) scaled to 8 bits by its bit depth; convert("RGB") would
    clip every value above 255 to white. Other modes are returned as they are."""
    if not (picture.mode.startswith("I") or picture.mode == "F"):
        return picture
    pixels = np.asarray(picture, dtype=np.float64)
    peak = float(pixels.max(initial=0))
    if picture.mode.startswith("I;16"):
        top = 65535.0
    elif picture.mode == "F" and peak <= 1:
        top = 1.0  # float images in 0..1
    else:  # 32-bit: the depth its values reach (8 or 16 bits), else its own maximum
        top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
    return Image.fromarray(np.clip(pixels * (255 / top), 0, 255).round().astype(np.uint8))


def open_image(ref: Any, base: Path | None = None, where: str = "") -> Image.Image:
    """An RGB PIL image from a path (relative to `base`), a datasets Image dict, a PIL image or an array.

    Converted like transformers' load_image (EXIF rotation, then RGB; grayscale, palette and RGBA included),
    so pipeline() sees the same pixels, except that 16-bit grayscale is scaled to 8 bits first (to_8bit).
    Raises TunesuiteError naming the file when it cannot be read.
    """
    try:  # convert() forces the full decode
        return to_8bit(ImageOps.exif_transpose(_open(ref, base))).convert("RGB")
    except TypeError as e:
        raise TunesuiteError(f"{where or 'image'}: {e}; set --image-column to a column of images or image paths") \
            from None
    except READ_ERRORS as e:
        raise TunesuiteError(f"{_problem(ref, base, where, e)}; {HINT}") from None


def check(ref: Any, base: Path | None, where: str) -> str:
    """What is wrong with one image ("" when it reads). JPEGs decode at reduced size (draft) for speed."""
    try:
        with _open(ref, base) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except TypeError as e:
        raise TunesuiteError(f"{where}: {e}; set --image-column to a column of images or image paths") from None
    except READ_ERRORS as e:
        return _problem(ref, base, where, e)
    return ""


def scan(refs: Iterable[Any], base: Path | None, where: str) -> list[tuple[int, str]]:
    """(row, problem) for every image that cannot be read."""
    found = ((i, check(ref, base, f"{where}, row {i}")) for i, ref in enumerate(refs))
    return [(i, problem) for i, problem in found if problem]


def target_size(processor: Any) -> tuple[int, int]:
    """(height, width) of the pixel_values the processor produces."""
    crop = getattr(processor, "crop_size", None)
    size = crop if getattr(processor, "do_center_crop", False) and crop else processor.size
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    if get("shortest_edge"):
        return int(get("shortest_edge")), int(get("shortest_edge"))
    raise TunesuiteError(f"cannot tell the input size from the image processor (size={size}); "
                         "save a processor with size height/width or shortest_edge")


def random_resized_crop(image: Image.Image, size: tuple[int, int], rng: random.Random,
                        scale: tuple[float, float] = (0.5, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
                        ) -> Image.Image:
    """A random crop of `scale` of the area and `ratio` aspect, resized to (height, width)."""
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return image.resize(size[::-1], Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    return image.resize(size[::-1], Image.Resampling.BILINEAR)  # fallback: the whole image


def augment(image: Image.Image, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Train-time augmentation: random resized crop + horizontal flip (p=0.5)."""
    image = random_resized_crop(image, size, rng)
    return ImageOps.mirror(image) if rng.random() < 0.5 else image
