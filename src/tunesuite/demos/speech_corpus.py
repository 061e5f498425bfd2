"""Real speech offline: espeak-ng reads generated sentences in many English voices, speeds and pitches.

`write_corpus` writes wavs/ (the pause espeak-ng appends trimmed) plus train.csv / validation.csv / test.csv
manifests (path,text,voice) that `--dataset FOLDER` reads. espeak-ng is deterministic, so the same arguments give
the same corpus.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tunesuite.errors import TunesuiteError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# espeak-ng accents x voice variants (+m1 ... +f4 change formants, breathiness and pitch range)
SOURCE_VOICES = tuple(f"{accent}+{variant}" for accent in ("en-us", "en-gb", "en-gb-x-rp", "en-us-nyc")
                      for variant in ("m1", "m2", "m3", "f1", "f2", "f5"))
TARGET_VOICES = tuple(f"{accent}+{variant}" for accent in ("en-gb-scotland", "en-029", "en-gb-x-gbclan")
                      for variant in ("m7", "f3", "f4"))


@dataclass(frozen=True)
class Utterance:
    text: str
    voice: str
    speed: int  # words per minute
    pitch: int  # 0-99


def espeak_path() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise TunesuiteError("espeak-ng not found: install it (apt-get install espeak-ng, or `make system-packages`)")
    return path


def digit_string(rng: random.Random, low: int = 2, high: int = 5) -> str:
    return " ".join(rng.choice(DIGITS) for _ in range(rng.randint(low, high)))


def utterances(texts: Sequence[str], voices: Sequence[str], rng: random.Random) -> list[Utterance]:
    """Each text in a random voice, at 130-200 words per minute and pitch 25-75."""
    return [Utterance(t, rng.choice(voices), rng.randint(130, 200), rng.randint(25, 75)) for t in texts]


def synthesize(utterance: Utterance, path: Path) -> None:
    command = [espeak_path(), "-v", utterance.voice, "-s", str(utterance.speed), "-p", str(utterance.pitch),
               "-w", str(path), utterance.text]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not path.exists():
        raise TunesuiteError(f"espeak-ng failed for voice {utterance.voice!r}: {result.stderr.strip()[:200]}")
    trim_trailing_silence(path)


def trim_trailing_silence(path: Path, keep: float = 0.06, floor_db: float = -40.0) -> None:
    """espeak-ng ends every utterance with about 0.3 s of near-silence (a fifth of a short one): cut it to `keep`
    seconds after the last sample within `floor_db` of the peak, so nobody trains on it."""
    import numpy as np
    import soundfile as sf

    with sf.SoundFile(str(path)) as file:
        rate, subtype = file.samplerate, file.subtype
        samples = file.read(dtype="int16")
    level = np.abs(samples.astype(np.int32))  # int32: abs(-32768) overflows int16
    loud = np.flatnonzero(level >= level.max(initial=0) * 10 ** (floor_db / 20))
    end = min(len(samples), int(loud[-1]) + 1 + int(keep * rate)) if len(loud) else len(samples)
    if end < len(samples):
        sf.write(str(path), samples[:end], rate, subtype=subtype)


def write_corpus(folder: Path, splits: dict[str, list[Utterance]], workers: int = 2) -> Path:
    """wavs/<split>-<i>.wav and <split>.csv (path,text,voice,speed,pitch); reused when already written."""
    spec = json.dumps({"trimmed": True, **{k: [asdict(u) for u in v] for k, v in splits.items()}}, sort_keys=True)
    stamp = hashlib.sha1(spec.encode()).hexdigest()
    if (folder / ".corpus").exists() and (folder / ".corpus").read_text() == stamp:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "wavs").mkdir(parents=True)
    jobs = [(u, folder / "wavs" / f"{split}-{i:05d}.wav") for split, rows in splits.items() for i, u in enumerate(rows)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: synthesize(*job), jobs))
    for split, rows in splits.items():
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "text", "voice", "speed", "pitch"])
            for i, u in enumerate(rows):
                writer.writerow([f"wavs/{split}-{i:05d}.wav", u.text, u.voice, u.speed, u.pitch])
    (folder / ".corpus").write_text(stamp)
    return folder
