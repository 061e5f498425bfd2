"""Caches keyed on content: a datasets `.map` that reads files a split only names (audio / image paths in a
manifest) is cached under a fingerprint of the split, the map's code and settings, and each named file's size
and mtime_ns. datasets alone keys such a map on the manifest, so a wav replaced under the same name would train
stale audio from the cache without a word.

Beside the cache files, a small sidecar keeps the file stats of the last run, so the log can say how many files
changed (`train audio cache: 1 of 40 source files changed since the last run, decoding again`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from datasets.fingerprint import Hasher

from tunesuite.files import write_text_atomic

log = logging.getLogger("tunesuite")
Stat = tuple[int, int] | None  # (size, mtime_ns); None: the file is missing (the map itself says so)


def referenced_files(split: Dataset, column: str, base: Path | None) -> Iterator[str]:
    """The files a column names: path strings, or the path of `{"bytes", "path"}` cells that hold no bytes
    (cells with bytes are in the dataset itself, and so in its fingerprint). Read as Arrow, never as Python
    bytes. Relative paths resolve against `base` (the manifest's folder), as the decoders resolve them."""
    for batch in split.select_columns([column]).with_format("arrow").iter(batch_size=4096):
        cells = batch.column(0).combine_chunks()
        if pa.types.is_struct(cells.type):
            names = {cells.type.field(i).name for i in range(cells.type.num_fields)}
            if "path" not in names:
                continue
            paths = cells.field("path")
            if "bytes" in names:  # keep the path only where no bytes are stored
                stored = pc.fill_null(pc.greater(pc.binary_length(cells.field("bytes")), 0), False)
                paths = pc.if_else(stored, pa.scalar(None, paths.type), paths)
            values = paths.to_pylist()
        elif pa.types.is_string(cells.type) or pa.types.is_large_string(cells.type):
            values = cells.to_pylist()
        else:  # arrays, bytes: in the dataset itself
            continue
        for value in values:
            if value and value.strip():
                path = Path(value).expanduser()
                yield str(base / path if base is not None and not path.is_absolute() else path)


def file_stats(paths: Iterator[str]) -> dict[str, Stat]:
    """path -> (size, mtime_ns): an os.stat per distinct file, cheap next to decoding it."""
    stats: dict[str, Stat] = {}
    for path in paths:
        if path not in stats:
            try:
                info = os.stat(path)
                stats[path] = (info.st_size, info.st_mtime_ns)
            except OSError:
                stats[path] = None
    return stats


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:32]


def _sidecar(split: Dataset, what: str) -> Path | None:
    """Where the last run's file stats for this split and map live: beside the split's cache files (a split
    held in memory has none, and its map results do not outlive the run either)."""
    if not split.cache_files:
        return None
    return Path(split.cache_files[0]["filename"]).parent / f"tunesuite-sources-{_digest(split._fingerprint, what)}.json"


def _changes(sidecar: Path | None, settings: dict[str, Any], stats: dict[str, Stat]) -> tuple[int, list[str]]:
    """(files whose stats differ from the last run's, settings that differ); (0, []) without a last run."""
    try:
        last = json.loads(sidecar.read_text()) if sidecar is not None and sidecar.is_file() else None
    except (OSError, ValueError):
        last = None
    if not isinstance(last, dict):
        return 0, []
    before = {path: tuple(stat) if stat else None for path, stat in last.get("files", {}).items()}
    changed = sum(before.get(path, "new") != stat for path, stat in stats.items())
    old = last.get("settings", {})
    now = json.loads(json.dumps(settings, default=repr))
    return changed, sorted(k for k in now.keys() | old.keys() if now.get(k) != old.get(k))


def keyed_map(split: Dataset, rows: Callable, *, column: str, base: Path | None, what: str, settings: dict[str, Any],
              redo: str = "decoding again", **map_kwargs: Any) -> Dataset:
    """`split.map(rows, **map_kwargs)` cached under a key of what its output depends on: the split itself, the
    map (its code and closure, as datasets hashes it, and its arguments), `settings` (rates, durations, processor
    settings: also named in the log when they change) and the size and mtime_ns of every file `column` names.

    `what` names the cache in the log and the sidecar (e.g. "train audio"), `redo` what a change means. A map
    datasets cannot hash is left to datasets (which then caches nothing across runs)."""
    try:
        code = Hasher.hash(rows)
    except Exception:  # datasets' own fallback for such a map: a random fingerprint, nothing reused
        return split.map(rows, **map_kwargs)
    stats = file_stats(referenced_files(split, column, base))
    call = {k: v for k, v in map_kwargs.items() if k not in ("desc", "num_proc")}  # those change no output
    fingerprint = _digest(split._fingerprint, code, call, settings, sorted(stats.items()))
    sidecar = _sidecar(split, what)
    changed, settings_changed = _changes(sidecar, settings, stats)
    if changed:
        log.info("%s cache: %d of %d source files changed since the last run, %s", what, changed, len(stats), redo)
    if settings_changed:
        log.info("%s cache: settings changed since the last run (%s), %s", what, ", ".join(settings_changed), redo)
    done = split.map(rows, new_fingerprint=fingerprint, **map_kwargs)
    if sidecar is not None:
        try:
            write_text_atomic(sidecar, json.dumps({"settings": settings, "files": stats}, default=repr))
        except OSError as e:  # only the count in the next run's log depends on it
            log.debug("could not write %s: %s", sidecar, e)
    return done
