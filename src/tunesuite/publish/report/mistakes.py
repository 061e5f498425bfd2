"""The worst-mistakes table of report.html: inputs shown as they are (text, thumbnail, audio player), the
reference, the prediction, and for transcripts the word-level diff."""

from __future__ import annotations

import io
import mimetypes
from pathlib import Path
from typing import Any

from tunesuite.publish.report.html import Raw, data_uri, esc, table

MAX_CLIP = 4 * 2**20  # bytes: a longer clip plays from its file instead of being copied into the page


def media(value: Any) -> str:
    """An input as the page shows it: a thumbnail for an image file, a player for an audio file, else text."""
    path = Path(str(value))
    kind = (mimetypes.guess_type(path.name)[0] or "") if len(str(value)) < 4096 else ""
    if kind.startswith(("image/", "audio/")) and path.is_file():
        if kind.startswith("image/"):
            from PIL import Image

            with Image.open(path) as im:
                im = im.convert("RGB")
                im.thumbnail((128, 128))
                buffer = io.BytesIO()
                im.save(buffer, "PNG")
            return f'<img src="{data_uri(buffer.getvalue(), "image/png")}" alt="{esc(path.name)}"><br>{esc(path.name)}'
        src = data_uri(path.read_bytes(), kind) if path.stat().st_size <= MAX_CLIP else path.resolve().as_uri()
        return f'<audio controls preload="metadata" src="{src}"></audio><br>{esc(path.name)}'
    return esc(value)


def embedded(uri: Any) -> list[str]:
    """A thumbnail or clip the mistakes file carries itself (the dataset held it as bytes or arrays)."""
    if isinstance(uri, str) and uri.startswith("data:image/"):
        return [f'<img src="{esc(uri)}" alt="input">']
    if isinstance(uri, str) and uri.startswith("data:audio/"):
        return [f'<audio controls preload="metadata" src="{esc(uri)}"></audio>']
    return []


def word_diff(reference: str, hypothesis: str) -> str:
    """Words the model dropped or got wrong struck through, words it put in their place (or added) marked."""
    import difflib

    ref, hyp = reference.split(), hypothesis.split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(esc(" ".join(ref[i1:i2])))
            continue
        if i2 > i1:
            parts.append(f"<del>{esc(' '.join(ref[i1:i2]))}</del>")
        if j2 > j1:
            parts.append(f"<ins>{esc(' '.join(hyp[j1:j2]))}</ins>")
    return " ".join(parts)


def mistakes_table(records: list[dict[str, Any]]) -> str:
    """One row per mistake: the input, reference, prediction, the word diff of transcripts, the scores."""
    scores = list(dict.fromkeys(k for r in records for k, v in r.items()
                                if isinstance(v, (int, float)) and k != "row"))
    diff = "wer" in scores
    headers = ["row", "input", "reference", "prediction", *(["word diff"] if diff else []), *scores]
    rows = []
    for r in records:
        inputs = r.get("input") or {}
        shown = Raw("<br>".join([*embedded(r.get("media")), *(media(v) for v in inputs.values())]) or
                    '<span class="muted">-</span>')
        row = [r.get("row", ""), shown, _answer(r.get("reference", "")), _answer(r.get("prediction", ""))]
        if diff:
            row.append(Raw(word_diff(str(r.get("reference", "")), str(r.get("prediction", "")))))
        rows.append(row + [r.get(k, "") for k in scores])
    return table(headers, rows)


def _answer(value: Any) -> Any:
    """A label, a number, or a multi-label set (as a comma-separated list)."""
    return (", ".join(map(str, value)) or "(none)") if isinstance(value, list) else value
