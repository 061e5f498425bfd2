"""One config path: defaults < mode defaults < YAML < command line; typos and bad values are errors."""

from __future__ import annotations

import pytest
import yaml

import tunesuite
from tunesuite.cli import parse_args
from tunesuite.errors import TunesuiteError

TASK = tunesuite.TEXT_CLASSIFICATION
BASE = ["--model", "m", "--dataset", "d"]


def test_command_line_wins_over_yaml(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("learning-rate: 0.01\nnum_train_epochs: 7\nmode: lora\nlora_r: 4\ntext_column: [q, a]\n")
    cfg = parse_args(TASK, [*BASE, "--config", str(config), "--learning-rate", "0.002"])
    assert cfg.training.learning_rate == 0.002  # command line
    assert cfg.training.num_train_epochs == 7  # YAML
    assert (cfg.run.mode, cfg.mode_args.lora_r, cfg.task_args.text_column) == ("lora", 4, ["q", "a"])


def test_mode_sets_learning_rate_unless_given():
    rates = {name: mode.learning_rate for name, mode in tunesuite.MODES.items()}
    assert {"full", "frozen", "lora", "prompt", "bitfit"} <= rates.keys()
    for mode, rate in rates.items():
        assert parse_args(TASK, [*BASE, "--mode", mode]).training.learning_rate == rate
    assert parse_args(TASK, [*BASE, "--mode", "lora", "--learning-rate", "1e-5"]).training.learning_rate == 1e-5
    assert rates["lora"] > 5 * rates["full"]


def test_early_stopping_selects_best_model_by_main_metric():
    cfg = parse_args(TASK, [*BASE, "--early-stopping-patience", "2"])
    assert cfg.training.load_best_model_at_end and cfg.training.metric_for_best_model == "accuracy"
    with pytest.raises(TunesuiteError, match="save and eval strategy to match"):
        parse_args(TASK, [*BASE, "--early-stopping-patience", "2", "--save-strategy", "steps"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lerning-rate", "1"], "unknown flag --lerning-rate (did you mean '--learning-rate'?)"),
        (["--mode", "lorra"], "invalid choice: 'lorra'"),
        (["--num-train-epochs", "many"], "invalid float value: 'many'"),
        (["stray"], "unexpected argument 'stray'"),
        (["--config", "missing.yaml"], "config file missing.yaml does not exist"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, message):
    with pytest.raises(TunesuiteError) as info:
        parse_args(TASK, [*BASE, *argv])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_yaml_typo_names_the_key_and_file(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("lora_rr: 4\n")
    with pytest.raises(TunesuiteError, match=r"unknown key 'lora_rr' in .*typo.yaml \(did you mean '--lora-r'\?\)"):
        parse_args(TASK, [*BASE, "--config", str(config)])


def test_run_config_repeats_the_run(tmp_path):
    from tunesuite.config.resolve import save_run_config

    cfg = parse_args(TASK, [*BASE, "--mode", "lora", "--lora-r", "4", "--seed", "7", "--output-dir", "o",
                            "--hub-token", "secret-token"])
    save_run_config(cfg, tmp_path / "run_config.yaml")
    text = (tmp_path / "run_config.yaml").read_text()
    assert "secret-token" not in text
    saved = yaml.safe_load(text)
    assert saved["task"] == "text-classification" and saved["lora_r"] == 4 and saved["seed"] == 7
    again = parse_args(TASK, ["--config", str(tmp_path / "run_config.yaml")])
    for section in ("model", "data", "run", "mode_args", "task_args"):
        assert getattr(again, section) == getattr(cfg, section)
    assert again.training.learning_rate == cfg.training.learning_rate
    assert again.training.output_dir == "o"


def test_config_of_another_task_is_refused(tmp_path):
    config = tmp_path / "asr.yaml"
    config.write_text("task: asr\nmode: full\n")
    with pytest.raises(TunesuiteError, match="is a asr config"):
        parse_args(TASK, ["--config", str(config)])


def test_help_lists_every_flag_with_help(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESUITE_CACHE", str(tmp_path))
    for attempt in ("built", "cached"):
        assert tunesuite.main(TASK, ["--help"]) is None, attempt  # answered by the entry, not by parsing
        text = capsys.readouterr().out
        for flag in ("--mode", "--lora-r", "--prompt-method", "--text-column", "--learning-rate",
                     "--unfreeze-after-epochs", "--early-stopping-patience", "--validation-split-percentage"):
            assert flag in text
        assert "--lora_r" not in text and "--learning_rate" not in text  # the dash spelling only
        assert "LoRA rank." in text
    assert len(list(tmp_path.glob("help-*.txt"))) == 1


def test_underscore_and_negative_values_still_parse(tmp_path):
    config = tmp_path / "neg.yaml"
    config.write_text("weight_decay: -1e-2\nadam_beta1: -.5\n")
    cfg = parse_args(TASK, [*BASE, "--mode", "lora", "--lora_r", "4", "--adam-epsilon", "-1e-8",
                            "--max-grad-norm=-1E-1", "--config", str(config)])
    assert cfg.mode_args.lora_r == 4 and cfg.training.adam_epsilon == -1e-8 and cfg.training.max_grad_norm == -0.1
    assert (cfg.training.weight_decay, cfg.training.adam_beta1) == (-1e-2, -0.5)


def test_a_flag_of_another_mode_is_refused_naming_its_mode(capsys):
    from conftest import cli_error

    line = cli_error(capsys, TASK, [*BASE, "--mode", "full", "--lora-r", "4"])
    assert line == ("error: --lora-r is a flag of --mode lora; this run is --mode full (drop the flag or change "
                    "the mode)")
    assert parse_args(TASK, [*BASE, "--mode", "full", "--lora-r", "8"]).mode_args is None  # its default: harmless
