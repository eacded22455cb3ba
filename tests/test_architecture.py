"""The floors of docs/ARCHITECTURE.md hold: read from every import in src/mimir."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from mimir.methods import list_methods

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "mimir"
#: modules (and their submodules) that may be imported inside a function: what a platform or a
#: PyTorch build may lack
OPTIONAL = {"fcntl", "torch.distributed.nn.functional", "openvino", "submitit"}
#: the floors that must never name a method (a method says what is its own)
GENERIC = ("mimir.api", "mimir.pipeline", "mimir.cli", "mimir.bench", "mimir.engine", "mimir.evaluate",
           "mimir.prune", "mimir.export", "mimir.resolve")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = SRC / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _unit(name: str) -> str:
    """The row of the table a module belongs to: ``mimir``, ``mimir.cli``, ``mimir.models`` ..."""
    parts = name.split(".")
    return ".".join(parts[:2])


class _Imports(ast.NodeVisitor):
    """Every import of a module: (imported module, line, inside a function)."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package, self.depth = module, is_package, 0
        self.found: list[tuple[str, int, bool]] = []

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        self.found += [(a.name, node.lineno, self.depth > 0) for a in node.names]

    def visit_ImportFrom(self, node):
        base = node.module or ""
        if node.level:   # relative: resolve against this module's package
            anchor = self.module.split(".")[: len(self.module.split(".")) - node.level + self.is_package]
            base = ".".join(anchor + ([node.module] if node.module else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self.found.append((sub if _is_module(sub) else base, node.lineno, self.depth > 0))


def _all_imports() -> dict[str, list[tuple[str, int, bool]]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        visitor = _Imports(_module_name(path), path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text()))
        out[_module_name(path)] = visitor.found
    return out


def _table() -> dict[str, tuple[int, set[str]]]:
    """``{package: (floor, {packages it may import})}`` from docs/ARCHITECTURE.md."""
    rows = {}
    for line in (ROOT / "docs" / "ARCHITECTURE.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            package = cells[1].strip("`")
            allowed = set() if cells[3] == "nothing" else {
                "mimir" + ("" if a.strip() == "mimir" else "." + a.strip()) for a in cells[3].split(",")}
            rows[package] = (int(cells[0]), allowed)
    return rows


IMPORTS = _all_imports()
TABLE = _table()


def test_every_package_is_in_the_table():
    units = {_unit(m) for m in IMPORTS}
    assert units == set(TABLE), (units ^ set(TABLE))


def test_the_table_only_lets_a_floor_import_floors_below_it():
    for package, (floor, allowed) in TABLE.items():
        for other in allowed:
            assert other in TABLE, (package, other)
            assert TABLE[other][0] < floor, f"{package} (floor {floor}) may import {other} (floor {TABLE[other][0]})"


def test_every_import_is_one_the_table_allows():
    wrong = []
    for module, found in IMPORTS.items():
        unit = _unit(module)
        for name, line, _ in found:
            if name.split(".")[0] == "mimir" and _unit(name) != unit and _unit(name) not in TABLE[unit][1]:
                wrong.append(f"{module}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules():
    graph = defaultdict(set)
    for module, found in IMPORTS.items():
        for name, _, inside in found:
            if name.startswith("mimir") and not inside and name != module:
                graph[module].add(name)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            # a package's __init__ importing its own submodules is how a package is built, not a cycle
            if node == nxt.rpartition(".")[0] and nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt]
                raise AssertionError(" -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_imports_inside_functions_are_only_for_what_may_be_missing():
    inside = [f"{module}:{line} {name}" for module, found in IMPORTS.items() for name, line, fn in found
              if fn and not any(name == o or name.startswith(o + ".") for o in OPTIONAL)]
    assert not inside, "\n".join(inside)


def test_package_inits_hold_imports_and_names_only():
    for path in PACKAGE.rglob("__init__.py"):
        for node in ast.parse(path.read_text()).body:
            ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or (
                isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"])
            assert ok, f"{path.relative_to(ROOT)}:{node.lineno} is code, not an import or a public name"


# "none" (the untrained pruned student) is also the word every option uses for "no such thing"
@pytest.mark.parametrize("method", [m for m in list_methods() if m != "none"])
def test_generic_floors_never_name_a_method(method):
    quoted = re.compile(rf"""["']{re.escape(method)}["']""")
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if any(module == g or module.startswith(g + ".") for g in GENERIC):
            for i, line in enumerate(path.read_text().splitlines(), start=1):
                if quoted.search(line.split("#")[0]):
                    hits.append(f"{module}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)
