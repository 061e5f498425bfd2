"""A made-up domain spoken by espeak-ng: invented product names and jargon inside ordinary sentences.

A pretrained recogniser cannot know these words (they are drawn from syllables, not from any dictionary), so it
must learn their spelling from the training split; the test split is read by voices that never speak in training.
Everything is drawn from a seed: another seed gives other words, other sentences and the same kind of corpus.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tunesuite.demos.speech_corpus import Utterance, utterances

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "fl", "gr", "kl",
          "pr", "st", "tr", "zh", "sk", "vr", "qu")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ee", "oo", "ou", "y")
CODAS = ("", "", "", "n", "r", "x", "k", "l", "s", "m", "nt", "rk", "sh")
# sentence shapes: {P} a product name, {J} a jargon word, {A} an action, {N} a noun, {W} a time
TEMPLATES = (
    "please {A} the {P} {N}", "the {P} {N} needs a {J} before {W}", "can you {A} {P} on the {J} {N}",
    "we {A} the {J} {N} after the {P} update", "send the {P} report to the {J} team {W}",
    "is the {J} on {P} ready {W}", "{A} {P} and {P} with the new {J}", "our {J} {N} runs on {P}",
    "the {N} said {P} broke the {J} again", "check the {J} of the {P} {N} {W}",
)
ACTIONS = ("restart", "open", "close", "update", "check", "move", "copy", "delete", "schedule", "connect", "reset")
NOUNS = ("server", "dashboard", "meeting", "invoice", "ticket", "account", "folder", "printer", "manager", "release")
TIMES = ("today", "tomorrow", "tonight", "this morning", "on monday", "next week", "after lunch", "at noon")


def made_up_word(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    """A pronounceable word from random syllables (onset, vowel, optional coda)."""
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
                   for _ in range(rng.randint(*syllables)))


def lexicon(rng: random.Random, size: int, avoid: frozenset[str] = frozenset()) -> list[str]:
    """`size` distinct made-up words, none of them a word the sentences use (or in `avoid`)."""
    taken = set(avoid) | {w for group in (TEMPLATES, ACTIONS, NOUNS, TIMES) for p in group for w in p.split()}
    words: list[str] = []
    while len(words) < size:
        word = made_up_word(rng)
        if word not in taken and len(word) >= 5:
            taken.add(word)
            words.append(word)
    return words


def sentence(rng: random.Random, products: Sequence[str], jargon: Sequence[str]) -> str:
    template = rng.choice(TEMPLATES)
    fills = {"P": products, "J": jargon, "A": ACTIONS, "N": NOUNS, "W": TIMES}
    out = []
    for part in template.split():
        slot = part[1:-1] if part.startswith("{") else None
        out.append(rng.choice(fills[slot]) if slot else part)
    return " ".join(out)


@dataclass(frozen=True)
class Domain:
    """The invented words of one corpus: product names and jargon."""

    products: tuple[str, ...]
    jargon: tuple[str, ...]

    @property
    def words(self) -> frozenset[str]:
        return frozenset(self.products + self.jargon)


def domain(seed: int = 0, products: int = 8, jargon: int = 8) -> Domain:
    rng = random.Random(f"domain-{seed}")
    words = lexicon(rng, products + jargon)
    return Domain(tuple(words[:products]), tuple(words[products:]))


def splits(vocabulary: Domain, sizes: dict[str, int], train_voices: Sequence[str], test_voices: Sequence[str],
           seed: int = 0) -> dict[str, list[Utterance]]:
    """train (and validation) in `train_voices`, test in `test_voices`, all sentences distinct across splits; every
    invented word is spoken in training, so what the test measures is learning its spelling, not guessing it."""
    if set(train_voices) & set(test_voices):
        raise ValueError("the test voices must be held out of training")
    rng = random.Random(f"sentences-{seed}")
    seen: set[str] = set()
    texts: dict[str, list[str]] = {}
    for split, count in sizes.items():
        rows: list[str] = []
        while len(rows) < count:
            text = sentence(rng, vocabulary.products, vocabulary.jargon)
            if text not in seen:
                seen.add(text)
                rows.append(text)
        texts[split] = rows
    spoken = {w for text in texts.get("train", []) for w in text.split()}
    missing = sorted(vocabulary.words - spoken)
    if missing:  # a word the training split never says: add one sentence for it
        texts["train"] += [f"please check the {word} today" for word in missing]
    return {split: utterances(rows, test_voices if split == "test" else train_voices, rng)
            for split, rows in texts.items()}


def term_errors(references: Sequence[str], hypotheses: Sequence[str], words: frozenset[str]) -> float:
    """The share of invented words in the references that the hypotheses do not contain (each occurrence counted
    once per utterance it appears in as many times): 0 when every one is spelled right, 1 when none is."""
    from collections import Counter

    wanted = found = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        need = Counter(w for w in reference.split() if w in words)
        have = Counter(hypothesis.split())
        wanted += sum(need.values())
        found += sum(min(n, have[w]) for w, n in need.items())
    return 1 - found / wanted if wanted else 0.0
