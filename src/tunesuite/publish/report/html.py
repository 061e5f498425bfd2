"""The HTML of report.html: one self-contained page (inline CSS, pictures and clips as data: URIs, no script)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;
vertical-align:top;overflow-wrap:anywhere;max-width:32em}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;word-break:break-all}img{max-width:100%}
del{background:#fdd;text-decoration:line-through}ins{background:#dfd;text-decoration:none}.muted{color:#777}"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def number(value: Any) -> str:
    if isinstance(value, float):
        if value and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else esc(value)


def table(headers: list[str] | None, rows: list[list[Any]]) -> str:
    """A table; without headers, a two-column one whose first column names each row."""
    head = f"<tr>{''.join(f'<th>{esc(h)}</th>' for h in headers)}</tr>" if headers else ""
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def cell(value: Any) -> str:
    if isinstance(value, Raw):
        return f"<td>{value}</td>"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f'<td class="n">{number(value)}</td>' if numeric else f"<td>{esc(value)}</td>"


class Raw(str):
    """HTML already escaped (a cell holding markup)."""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def picture(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    return f'<p><img src="{data_uri(path.read_bytes(), "image/png")}" alt="{esc(alt)}"></p>'


def page(title: str, parts: list[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(p for p in parts if p) + "\n</body></html>\n")
