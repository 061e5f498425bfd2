"""What the README shows is what the code does: its tables come from the registries."""

from __future__ import annotations

from pathlib import Path

from tunesuite.cli import families_table, modes_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_mode_table_is_the_registry():
    assert modes_table() in README.read_text(), "README's mode table is stale: paste `tunesuite modes` into it"


def test_readme_family_table_is_the_registry():
    assert families_table() in README.read_text(), "README's family table is stale: paste `tunesuite families` into it"
