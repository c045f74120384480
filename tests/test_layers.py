"""The layout is the data flow: imports run one way, from the command line down to the schemas.

Every import in the project's packages, module-level or inside a function (a lazy import is
still a dependency), is checked against :data:`LAYERS`: a package may import its own modules and
those of lower layers only. Packages in one layer (producers, consumers, reports) are peers and
import none of each other. Modules import no cycle either, inside a package or across.
docs/DESIGN.md ("Layers") says what each layer is for.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# lowest first
LAYERS: list[set[str]] = [
    {"schemas"},
    {"nyc311"},
    {"survey"},
    {"storage"},
    {"producers", "consumers", "reports"},
    {"operations"},
    {"cli"},
    {"benchmarks"},
]
LAYER = {package: n for n, layer in enumerate(LAYERS) for package in layer}


def modules() -> Iterator[tuple[str, Path]]:
    for package in LAYER:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import of a project package in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = (module if path.name == "__init__.py" else module.rsplit(".", 1)[0])
                base = ".".join(base.split(".")[: len(base.split(".")) - node.level + 1])
                names = [f"{base}.{node.module}" if node.module else base]
            else:
                names = [node.module or ""]
            # `from storage import offsets` imports the module storage.offsets
            names += [f"{names[0]}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in LAYER:
                yield node.lineno, name


ALL = dict(modules())


def _known(name: str) -> str | None:
    """The project module ``name`` refers to (a module, or the package holding the name)."""
    while name:
        if name in ALL:
            return name
        name = name.rpartition(".")[0]
    return None


def test_the_layers_cover_every_package():
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").exists()}
    assert packages - {"tests"} == set(LAYER), "a new package needs a place in LAYERS"


def test_every_package_is_installed():
    """A package missing from pyproject.toml's list works in a checkout and fails installed."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts)
             for top in LAYER.keys() - {"benchmarks"} for p in (REPO / top).rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - found == set(), "pyproject.toml lists packages that do not exist"


def test_imports_run_one_way():
    wrong = []
    for module, path in ALL.items():
        mine = module.split(".")[0]
        for line, name in imports(module, path):
            theirs = name.split(".")[0]
            if theirs != mine and LAYER[theirs] >= LAYER[mine]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {mine} (layer {LAYER[mine]}) "
                             f"imports {name} (layer {LAYER[theirs]})")
    assert wrong == [], "imports against the layers:\n" + "\n".join(wrong)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in ALL}
    for module, path in ALL.items():
        for _line, name in imports(module, path):
            target = _known(name)
            # a package's own __init__ importing its modules is no cycle with them
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert _cycle(graph) == expected


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from cli import main\nfrom . import sibling\n")
    found = {name for _line, name in imports("storage.mod", source)}
    assert {"cli", "cli.main", "storage.sibling"} <= found
