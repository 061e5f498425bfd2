"""The architecture's rules (docs/architecture.md) as tests, read statically from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tunesuite.registry import BUILTIN_TASKS

ROOT = Path(__file__).resolve().parents[1] / "src" / "tunesuite"
BUILTIN_MODES = {"full", "frozen", "lora", "prompt", "bitfit"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`: imports for annotations only, never run."""
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST, runtime_only: bool):
    """ast.walk, leaving out the body (not the else) of `if TYPE_CHECKING:` blocks when runtime_only."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if runtime_only and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _imports(name: str, runtime_only: bool = False) -> set[str]:
    """Every module `name` imports (top-level or inside functions), resolved to dotted names, ours or not.

    runtime_only is the layering test's reading: imports under `if TYPE_CHECKING:` are left out, and
    `from package import module` names the module, not the package (whose __init__ runs as any parent does)."""
    path = MODULES[name]
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _walk(ast.parse(path.read_text()), runtime_only):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")[: len(base.split(".")) - node.level + 1]
                stem = ".".join(parts + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = {f"{stem}.{a.name}" for a in node.names}
            out |= names if runtime_only and names <= MODULES.keys() else {stem, *names}
    return out


def _graph() -> dict[str, set[str]]:
    """Edges between our modules; a package's own submodules and a module's parent packages are not edges (Python
    imports the parents first anyway), as in the shared import_cycles.py tool."""
    return {m: {t for t in _imports(m) if t in MODULES and t != m and not t.startswith(m + ".")
                and not m.startswith(t + ".")} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert len(MODULES) > 30 and "tunesuite.registry" in MODULES
    assert _cycles(_graph()) == []


# The layers, lowest first: a module may import only modules of its own rank or lower. The most specific entry
# (longest dotted prefix) decides; models.families holds the facts modes need, so it sits with config and data.
RANKS = {
    "tunesuite.registry": 0, "tunesuite.errors": 0, "tunesuite.files": 0, "tunesuite.logs": 0,
    "tunesuite.config": 1, "tunesuite.data": 1, "tunesuite.models.families": 1,
    "tunesuite.modes": 2,
    "tunesuite.tasks": 3, "tunesuite.models": 3,
    "tunesuite.publish": 4,
    "tunesuite.train": 5,
    "tunesuite.choose": 6,
    "tunesuite": 7, "tunesuite.__main__": 7, "tunesuite.cli": 7, "tunesuite.demos": 7,
    "tunesuite.assets": 7,
}


def _rank(module: str) -> int | None:
    """The rank of the most specific RANKS entry that is `module` or a package above it (the bare package
    `tunesuite` only for its own __init__)."""
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in RANKS:
            return RANKS[".".join(parts[:end])]
    return RANKS.get(module)


def _climbs(graph: dict[str, set[str]]) -> list[str]:
    """`module -> imported (rank a -> rank b)` for every edge that goes to a higher rank."""
    return [f"{m} -> {t} (rank {_rank(m)} -> rank {_rank(t)})" for m in sorted(graph) for t in sorted(graph[m])
            if _rank(t) > _rank(m)]


def test_the_layer_checker_finds_climbs(tmp_path):
    assert _rank("tunesuite.models.families") == 1 and _rank("tunesuite.models.predictor") == 3
    assert _rank("tunesuite.publish.report.page") == 4 and _rank("tunesuite") == 7 and _rank("numpy") is None
    graph = {"tunesuite.config.parse": {"tunesuite.choose.auto", "tunesuite.errors"},
             "tunesuite.modes.lora": {"tunesuite.models.families"}}
    assert _climbs(graph) == ["tunesuite.config.parse -> tunesuite.choose.auto (rank 1 -> rank 6)"]
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
                      "def f():\n    import c\n")
    MODULES["sample"] = sample
    try:
        assert _imports("sample", runtime_only=True) == {"typing", "typing.TYPE_CHECKING", "b", "c"}
        assert "a" in _imports("sample")
        sample.write_text("from tunesuite.models import families\nfrom tunesuite.models import open_run\n")
        assert _imports("sample", runtime_only=True) == {"tunesuite.models.families", "tunesuite.models",
                                                         "tunesuite.models.open_run"}
    finally:
        del MODULES["sample"]


def test_every_module_has_a_rank():
    assert sorted(m for m in MODULES if _rank(m) is None) == []


def test_no_import_climbs_a_layer():
    """Dependencies point down: entry -> choose -> train -> publish -> tasks/models -> modes -> config/data/families
    -> leaves. Imports inside functions count; imports under `if TYPE_CHECKING:` do not."""
    graph = {m: {t for t in _imports(m, runtime_only=True) if t in MODULES and t != m
                 and not t.startswith(m + ".") and not m.startswith(t + ".")} for m in MODULES}
    climbs = _climbs(graph)
    assert climbs == [], "imports that climb a layer:\n" + "\n".join(climbs)


def test_registry_is_a_leaf():
    ours = {t for t in _imports("tunesuite.registry") if t == "tunesuite" or t.startswith("tunesuite.")}
    assert ours == set()


def _in(folder: str, path: Path) -> bool:
    return path.is_relative_to(ROOT / folder)


def _mode_name_comparisons(path: Path) -> list[str]:
    """`x == "lora"`, `"full" != x`, `x in ("frozen", ...)`: comparisons of a value with a built-in mode name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for op, left, right in zip(node.ops, [node.left, *node.comparators[:-1]], node.comparators, strict=True):
            sides = [left, right]
            if isinstance(op, (ast.In, ast.NotIn)):
                sides = [e for e in (right.elts if isinstance(right, (ast.Tuple, ast.List, ast.Set)) else [])]
            elif not isinstance(op, (ast.Eq, ast.NotEq)):
                continue
            if any(isinstance(s, ast.Constant) and s.value in BUILTIN_MODES for s in sides):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_the_mode_name_finder_finds_comparisons(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('a == "lora"\n"full" != b\nc in ("x", "prompt")\nd in ["bitfit"]\ne == "fully"\nf in "lora"\n')
    assert _mode_name_comparisons(sample) == [f"sample.py:{line}" for line in (1, 2, 3, 4)]


def test_no_mode_name_in_a_comparison_outside_the_modes():
    """The trainer and tasks ask the Mode (its capabilities), never its name."""
    outside = [p for p in sorted(ROOT.rglob("*.py")) if not _in("modes", p) and p != ROOT / "registry.py"]
    found = [f"{p.parent.relative_to(ROOT)}/{hit}" for p in outside for hit in _mode_name_comparisons(p)]
    assert found == []


TASK_MODULES = tuple(sorted(set(BUILTIN_TASKS.values())))


@pytest.mark.parametrize("folder", ["config", "modes", "models", "data", "train", "choose", "publish"])
def test_the_core_never_imports_a_task_or_a_demo(folder):
    """Tasks register themselves; the core finds them through the registry (the tasks' shared helpers, such as
    tasks/metrics.py, are no task)."""
    found = {}
    for name, path in MODULES.items():
        if _in(folder, path):
            bad = {t for t in _imports(name) if t in TASK_MODULES or t.startswith("tunesuite.demos")}
            if bad:
                found[name] = sorted(bad)
    assert found == {}


def test_every_builtin_task_has_a_script_and_a_demo():
    """tasks/<name>.py runs a registered task by name; with no arguments that task's registered demo runs."""
    from tunesuite import registry

    scripts = sorted((ROOT.parents[1] / "tasks").glob("*.py"))
    called = set()
    for script in scripts:
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "run" and node.args:
                called.add(node.args[0].value)
    tasks = {registry.find_task(name).name for name in registry.BUILTIN_TASKS}
    assert {registry.find_task(name).name for name in called} == tasks and len(scripts) == len(tasks)
    for name in tasks:
        assert callable(registry.find_demo(name)), name


def test_script_help_lists_the_registered_modes(capsys):
    import tunesuite

    assert tunesuite.run("text-classification", ["--help"]) is None
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--mode" in out
    assert all(name in out for name in tunesuite.MODES)
