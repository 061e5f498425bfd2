"""--language / --speech-task for multilingual Whisper: checked in one line (English-only checkpoints, unknown
languages with close matches, translate without a language), then the same prefix in the training targets and in
what a finished run (LoRA: its base's generation config knows nothing of it) generates."""

from __future__ import annotations

import pytest
from asr_fixtures import tiny_w2v, write_tone_corpus  # noqa: F401  (a fixture)
from test_whisper import FAST
from whisper_fixtures import tiny_multilingual_whisper, tiny_whisper_model  # noqa: F401  (fixtures)

import tunesuite
from tunesuite.errors import TunesuiteError
from tunesuite.tasks import asr_seq2seq, speech_language


def _generation(path):
    from transformers import GenerationConfig

    return GenerationConfig.from_pretrained(path)


@pytest.mark.parametrize(("language", "task", "expected"), [
    ("fr", None, "English-only"), (None, "translate", "English-only"), ("en", "translate", "English-only")])
def test_an_english_only_checkpoint_refuses_in_one_line(tiny_whisper_model, language, task, expected):  # noqa: F811
    with pytest.raises(TunesuiteError) as caught:
        speech_language.check(_generation(tiny_whisper_model), language, task, "tiny.en")
    message = str(caught.value)
    assert "\n" not in message and expected in message and "--model tiny.en" in message
    assert f"--language {language}" in message if language else "--speech-task translate" in message


def test_english_on_an_english_only_checkpoint_changes_nothing(tiny_whisper_model):  # noqa: F811
    assert speech_language.check(_generation(tiny_whisper_model), "English", None, "m") == (None, None)


@pytest.mark.parametrize(("language", "task", "expected"), [
    ("frnech", None, "did you mean french"), ("xx", None, "not a language"),
    ("spanish", None, "not a language"),  # a real language this checkpoint has no token for
    (None, "translate", "needs --language")])
def test_a_bad_choice_on_a_multilingual_checkpoint_is_one_line(tiny_multilingual_whisper, language, task,  # noqa: F811
                                                               expected):
    with pytest.raises(TunesuiteError) as caught:
        speech_language.check(_generation(tiny_multilingual_whisper), language, task, "m")
    assert "\n" not in str(caught.value) and expected in str(caught.value)


@pytest.mark.parametrize(("language", "task", "expected"), [
    ("French", None, ("fr", "transcribe")), ("de", "translate", ("de", "translate"))])
def test_names_and_codes_resolve(tiny_multilingual_whisper, language, task, expected):  # noqa: F811
    assert speech_language.check(_generation(tiny_multilingual_whisper), language, task, "m") == expected


def test_targets_and_generation_start_with_the_language_and_task(tiny_multilingual_whisper, tmp_path,  # noqa: F811
                                                                 monkeypatch):
    tones = write_tone_corpus(tmp_path / "tones", {"train": 8, "validation": 2, "test": 2})
    generation = _generation(tiny_multilingual_whisper)
    fr, translate = generation.lang_to_id["<|fr|>"], generation.task_to_id["translate"]
    seen: list[list[int]] = []
    collator = asr_seq2seq.collator

    def recording(processor):
        collate = collator(processor)

        def run(rows):
            batch = collate(rows)
            seen.extend(batch["labels"].tolist())
            return batch

        return run

    monkeypatch.setattr(asr_seq2seq, "collator", recording)
    out = tmp_path / "lora"
    tunesuite.finetune("asr", str(tiny_multilingual_whisper), str(tones), mode="lora", output_dir=str(out),
                       language="French", speech_task="translate", **{**FAST, "max_steps": 2, "do_predict": False})
    assert seen and all(row[:3] == [fr, translate, generation.no_timestamps_token_id] for row in seen)
    predictor = tunesuite.load(out)  # a LoRA run: the base's generation config has no language
    starts: list[list[list[int]]] = []
    decoder = predictor.model.get_base_model().model.decoder
    decoder.register_forward_pre_hook(lambda _, args, kwargs: starts.append(kwargs["input_ids"].tolist()),
                                      with_kwargs=True)
    predictor.predict([str(p) for p in sorted((tones / "wavs").glob("*.wav"))[:2]])
    assert starts[0] == [[generation.decoder_start_token_id, fr, translate, generation.no_timestamps_token_id]] * 2


def test_a_ctc_model_refuses_language(tiny_w2v, tmp_path):  # noqa: F811
    tones = write_tone_corpus(tmp_path / "tones", {"train": 2, "validation": 1})
    with pytest.raises(TunesuiteError) as caught:
        tunesuite.finetune("asr", str(tiny_w2v), str(tones), mode="full", output_dir=str(tmp_path / "o"),
                           language="fr", **FAST)
    assert "\n" not in str(caught.value) and "--language fr" in str(caught.value) and "CTC" in str(caught.value)


def _cfg(language=None, speech_task=None):
    from types import SimpleNamespace

    return SimpleNamespace(model=SimpleNamespace(revision="main", cache_dir=None),
                           task_args=SimpleNamespace(language=language, speech_task=speech_task))


def test_a_multilingual_checkpoint_without_language_is_warned_about(tiny_multilingual_whisper,  # noqa: F811
                                                                     tiny_whisper_model, monkeypatch):  # noqa: F811
    warned: list[str] = []
    monkeypatch.setattr(asr_seq2seq.log, "warning", lambda message, *args: warned.append(message % args))
    asr_seq2seq.load_processor(str(tiny_whisper_model), _cfg())
    assert not warned  # English-only: nothing to say
    processor = asr_seq2seq.load_processor(str(tiny_multilingual_whisper), _cfg())
    assert len(warned) == 1 and "--language" in warned[0] and processor.tokenizer.language is None
    processor = asr_seq2seq.load_processor(str(tiny_multilingual_whisper), _cfg("German"))
    assert len(warned) == 1 and (processor.tokenizer.language, processor.tokenizer.task) == ("de", "transcribe")


def test_with_a_language_a_transcript_longer_than_the_decoder_is_still_dropped(tiny_multilingual_whisper,  # noqa: F811
                                                                                tmp_path, log):
    """--language builds the targets another way; the limits the model cannot take still apply to them."""
    import random

    from asr_fixtures import random_text, write_split

    rng = random.Random(0)
    data = tmp_path / "tones"
    write_split(data, "train", [" ".join(["abc"] * 60)] + [random_text(rng) for _ in range(7)], rng)
    for split in ("validation", "test"):
        write_split(data, split, [random_text(rng) for _ in range(2)], rng)
    tunesuite.finetune("asr", str(tiny_multilingual_whisper), str(data), mode="lora", output_dir=str(tmp_path / "o"),
                       language="French", max_duration=1000.0, **{**FAST, "max_steps": 1, "do_predict": False})
    dropped = [line for line in log.text.splitlines() if "train split: dropped 1 of 8 utterances" in line]
    assert dropped and ("transcript longer than the decoder's" in dropped[0]
                        or "longer than the model's" in dropped[0]), log.text
