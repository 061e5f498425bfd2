"""Limits read from the model and values checked up front: the sequence length fits the position embeddings, a
tokenizer without a pad token pads with one it has, nonsensical training values stop with one `error:` line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import FILLER, WORDS, cli_error

import tunesuite

QUICK = {"max_steps": 1, "per_device_train_batch_size": 4, "eval_strategy": "no", "save_strategy": "no",
         "do_predict": False, "disable_tqdm": True, "report_to": "none"}


@pytest.fixture(scope="module")
def long_rows(tmp_path_factory) -> Path:
    """Rows of 300 words: far past any tiny model's 64 positions."""
    folder = tmp_path_factory.mktemp("long-rows")
    with (folder / "train.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(8):
            topic = list(WORDS)[i % 2]
            writer.writerow([" ".join([WORDS[topic][0]] * 300), topic])
    return folder


def tiny_gpt2(folder: Path, specials: dict[str, str]) -> Path:
    """A GPT-2 (no pad token, like the Hub's) with a word-level tokenizer holding only `specials`."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate([*specials.values(), "<unknown>", *FILLER, *sum(WORDS.values(), [])])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unknown>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **specials).save_pretrained(folder)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                     bos_token_id=0, eos_token_id=0)
    transformers.GPT2ForSequenceClassification(config).base_model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("family", "limit"), [("bert", 64), ("distilbert", 64), ("roberta", 65)])
def test_sequence_length_is_clamped_to_the_position_embeddings(family_model, long_rows, tmp_path, log, family,
                                                               limit):
    """The default --max-seq-length 128 on a 64-position model (RoBERTa's 66 minus its padding offset, pad id
    0 + 1) trains on 300-word rows; the log says so and the saved tokenizer truncates the same way."""
    tunesuite.finetune("text-classification", str(family_model(family)), str(long_rows), mode="full",
                       output_dir=str(tmp_path / "out"), **QUICK)
    assert "--max-seq-length 128 is longer than the model takes (max_position_embeddings " in log.text
    assert f"truncating to {limit} tokens" in log.text
    saved = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert saved["model_max_length"] == limit
    assert tunesuite.load(tmp_path / "out").predict([" ".join(["goal"] * 300)])[0]["label"] in WORDS


def test_a_length_within_the_limit_is_kept(family_model, long_rows, tmp_path, log):
    tunesuite.finetune("text-classification", str(family_model("bert")), str(long_rows), mode="full",
                       output_dir=str(tmp_path / "out"), max_seq_length=32, **QUICK)
    assert "--max-seq-length" not in log.text
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["model_max_length"] == 32


def test_position_limit_reads_the_config():
    """Real sizes: RoBERTa's 514 positions hold 512 tokens (pad id 1), BERT's 512 hold 512, T5 names none."""
    from transformers import AutoModelForSequenceClassification, BertConfig, RobertaConfig, T5Config, XLMRobertaConfig

    from tunesuite.models.pretrained import position_limit

    auto = AutoModelForSequenceClassification
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1), auto, 1)[0] == 512
    assert position_limit(XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1), auto, 1)[0] == 512
    assert position_limit(BertConfig(max_position_embeddings=512), auto, 0)[0] == 512
    assert position_limit(T5Config(), auto, 0) is None


def test_tokenizer_without_pad_token_pads_with_eos(text_data_small, tmp_path, log):
    """GPT-2 style: no pad token. The run pads with eos, the model config learns that id (GPT-2's classifier
    finds each row's last token by it), and the saved run predicts on a batch of uneven rows."""
    model = tiny_gpt2(tmp_path / "gpt2", {"eos_token": "<eos>"})
    tunesuite.finetune("text-classification", str(model), str(text_data_small), mode="full",
                       output_dir=str(tmp_path / "out"), **QUICK)
    assert f"the tokenizer of {model} has no pad token: padding with its eos '<eos>' (id 0)" in log.text
    assert json.loads((tmp_path / "out" / "config.json").read_text())["pad_token_id"] == 0
    rows = tunesuite.load(tmp_path / "out").predict(["goal", "the oven was very hot today and the salt"])
    assert len(rows) == 2


def test_tokenizer_with_nothing_to_pad_with_is_refused(text_data_small, tmp_path, capsys):
    model = tiny_gpt2(tmp_path / "bare", {})
    line = cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, ["--model", str(model), "--dataset", str(text_data_small),
                                                              "--output-dir", str(tmp_path / "out")])
    assert line == (f"error: the tokenizer of {model} has no pad token, nor an eos, unk, sep or cls token to pad "
                    "with; add a pad token to it (tokenizer.add_special_tokens, then save_pretrained) or choose "
                    "another --model")


@pytest.fixture(scope="module")
def text_data_small(family_data):
    return family_data["text-classification"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--per-device-train-batch-size", "0"], "--per-device-train-batch-size 0: must be at least 1"),
    (["--per-device-eval-batch-size", "-2"], "--per-device-eval-batch-size -2: must be at least 1"),
    (["--gradient-accumulation-steps", "0"], "--gradient-accumulation-steps 0: must be at least 1"),
    (["--eval-accumulation-steps", "0"], "--eval-accumulation-steps 0: must be at least 1"),
    (["--max-grad-norm", "-1"], "--max-grad-norm -1: must be 0 or more (0: no clipping)"),
    (["--weight-decay", "-0.1"], "--weight-decay -0.1: must be 0 or more"),
    (["--adam-beta1", "1.5"], "--adam-beta1 1.5: must be in [0, 1)"),
    (["--adam-epsilon", "-1"], "--adam-epsilon -1: must be 0 or more"),
    (["--label-smoothing-factor", "1.5"], "--label-smoothing-factor 1.5: must be in [0, 1)"),
    (["--dataloader-num-workers", "-1"], "--dataloader-num-workers -1: must be 0 or more"),
    (["--save-total-limit", "0"], "--save-total-limit 0: must be at least 1 (the Trainer would keep every"),
    (["--seed", "-1"], "--seed -1: must be in 0 .. 2**32 - 1"),
    (["--logging-steps", "-1"], "--logging-steps -1: must be above 0 with --logging-strategy steps"),
    (["--save-strategy", "steps", "--save-steps", "0"], "--save-steps 0: must be above 0 with --save-strategy steps"),
    (["--eval-strategy", "steps", "--eval-steps", "-1"], "--eval-steps -1: must be above 0 with --eval-strategy"),
    # refused by TrainingArguments itself while parsing: the same line, in our flag names
    (["--warmup-steps", "-1"], "--warmup-steps -1: Got --warmup-steps = -1.0, Expected value --warmup-steps >= 0"),
    (["--logging-steps", "0"], "--logging-steps 0: logging strategy steps requires non-zero --logging-steps"),
])
def test_nonsensical_training_values_are_refused_up_front(capsys, tiny_bert, topic_data, tmp_path, flags, message):
    line = cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, ["--model", str(tiny_bert), "--dataset", str(topic_data),
                                                              "--output-dir", str(tmp_path / "out"), *flags])
    assert line.startswith(f"error: {message}"), line
    assert not (tmp_path / "out").exists()  # refused before anything ran


@pytest.mark.parametrize(("yaml", "message"), [
    ("lora: {r: 8}", "'lora' in {path} is a mapping (a section), but each key is one flag with a single value or a "
                     "list: write lora_r: 8 (the flag --lora-r 8)"),
    ("lora: {r: 4, target_modules: [query, value], nope: 1}",
     "write lora_r: 4, lora_target_modules: [query, value] (the flags --lora-r 4 --lora-target-modules query value); "
     "no flag matches nope"),
    ("training: {seed: 3}", "write seed: 3 (the flag --seed 3)"),
    ("learning_rate: {value: 1}", "bad value for 'learning_rate' in {path}: a mapping; give 'learning_rate' a single "
                                  "value or a list"),
])
def test_yaml_section_names_the_flat_flags(capsys, tmp_path, yaml, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml + "\n")
    line = cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, ["--config", str(path), "--mode", "lora"])
    assert message.format(path=path) in line, line
    assert "bad value" not in line or yaml.startswith("learning_rate")  # a key that is no flag is no bad value


def test_keyword_mapping_names_the_flat_keyword():
    from tunesuite.errors import TunesuiteError

    with pytest.raises(TunesuiteError, match=r"option 'lora' is a mapping, but each option is one flag: write "
                                             r"lora_r=8 \(the flag --lora-r 8\)"):
        tunesuite.finetune("text-classification", "m", "d", mode="lora", lora={"r": 8})
