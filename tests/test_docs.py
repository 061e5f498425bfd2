"""What the README and the docs show is what the code does: tables come from the registries, every page is in the
site's nav, and the site builds with `mkdocs build --strict` (a broken link, anchor or API reference fails)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunesuite.cli import COMMANDS, families_table, modes_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _nav_pages(entries: list) -> list[str]:
    """Every page file named in mkdocs.yml's nav, at any depth."""
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def _pending() -> set[str]:
    """Pages mkdocs.yml's `not_in_nav` names: written beside the site, tolerated outside the nav by name alone."""
    return {line.strip().lstrip("/") for line in _config().get("not_in_nav", "").splitlines() if line.strip()}


def test_readme_mode_table_is_the_registry():
    assert modes_table() in README.read_text(), "README's mode table is stale: paste `tunesuite modes` into it"


def test_modes_page_table_is_the_registry():
    assert modes_table() in (DOCS / "modes.md").read_text(), \
        "docs/modes.md's mode table is stale: paste `tunesuite modes` into it"


def test_families_page_table_is_the_registry():
    assert families_table() in (DOCS / "families.md").read_text(), \
        "docs/families.md's family table is stale: paste `tunesuite families` into it"


def test_command_page_names_every_command():
    page = (DOCS / "command.md").read_text()
    missing = [name for name in COMMANDS if f"tunesuite {name}" not in page]
    assert not missing, f"docs/command.md does not show: {', '.join(missing)}"


def test_readme_is_a_landing_page_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 250, "README.md is a landing page: move detail to a docs/ page"
    for command in ("make demo", "make test"):  # .ci/run and new users type these
        assert re.search(rf"^{command}\b", text, re.M), f"README.md lost the `{command}` line"
        assert re.search(rf"^{command.split()[1]}:", (ROOT / "Makefile").read_text(), re.M)


def _readme_commands() -> list[str]:
    """The README's shell lines that call `tunesuite`, continuation lines joined, `$(tunesuite assets X)` kept."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split("#")[0].split("| ")[-1].strip() for line in lines if "tunesuite " in line.split("#")[0]]


def test_readme_commands_are_commands():
    called = [re.search(r"tunesuite (\S+)", line).group(1) for line in _readme_commands()]
    assert "train" in called and "assets" in called
    unknown = {name for name in called if name not in COMMANDS and not name.startswith("-")}
    assert not unknown, f"README calls commands that do not exist: {', '.join(sorted(unknown))}"


def test_readme_quickstarts_parse():
    """Every `tunesuite train TASK ...` quickstart parses with today's flags (a renamed flag fails here)."""
    from tunesuite.config.parse import command_values
    from tunesuite.tasks import get_task

    runs = [line for line in _readme_commands() if line.startswith("tunesuite train ")]
    assert len(runs) >= 4, runs
    for line in runs:
        task, *argv = shlex.split(re.sub(r'"\$\(tunesuite assets (\w+)\)"', r"ASSET_\1", line))[2:]
        values = command_values(get_task(task), argv)
        assert values["output_dir"].startswith("runs/") and values["mode"], line


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_stay_in_the_repository_and_exist(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"
        assert path.exists() or path.name in _pending(), f"{page.name} links to a missing file: {target}"


def test_every_docs_page_is_in_the_nav():
    nav = _nav_pages(_config()["nav"])
    outside = {p.name for p in DOCS.glob("*.md")} - set(nav) - _pending()
    assert not outside, f"docs pages missing from mkdocs.yml's nav: {', '.join(sorted(outside))}"
    assert len(nav) == len(set(nav)), "a page is in mkdocs.yml's nav twice"
    assert not set(nav) & _pending(), "a page in the nav is still in not_in_nav: remove it there"


def _needs_mkdocs() -> None:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed (the docs extra: pip install -e '.[docs]')")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict`; never with -q, which hides the warnings that strict mode counts (it then passes)."""
    env = {"PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d",
                           str(site)], capture_output=True, text=True, env=env, timeout=300)


def test_the_site_builds_strict(tmp_path):
    _needs_mkdocs()
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "the same path as the command line" in api, "the API page lacks finetune's docstring"
    assert 'id="tunesuite.registry.register_mode"' in api


def test_the_strict_build_fails_on_a_broken_link_or_anchor(tmp_path):
    """The same validation settings on a one-page site: a missing page and a missing anchor each fail it."""
    _needs_mkdocs()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\n[gone](missing.md) and [nowhere](#no-such-heading)\n")
    config = {"site_name": "t", "docs_dir": str(tmp_path / "docs"), "strict": True,
              "validation": _config()["validation"], "nav": [{"Home": "index.md"}]}
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "missing.md" in result.stderr and "no-such-heading" in result.stderr, result.stderr[-2000:]
