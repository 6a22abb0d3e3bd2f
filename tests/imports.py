"""The package's import graph, read from the source (``ast``), for the structure tests.

Every ``import`` counts, at module level or inside a function: a function-level import runs
when the stage runs, so it is a dependency all the same (and hides a cycle just as well).
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cliphand"


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` in this repository, or None (not ours, or no such module)."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=None)
def direct_imports(name: str) -> frozenset[str]:
    """The package's modules that module ``name`` imports directly, with the packages above them."""
    path = module_file(name)
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != PACKAGE or module_file(target) is None:
                continue
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # importing a.b.c runs a and a.b
    found.discard(name)
    return frozenset(found)


def closure(name: str) -> set[str]:
    """Module ``name`` and every package module it imports, transitively."""
    seen, todo = set(), [name, *(".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))]
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(direct_imports(mod))
    return seen


def all_modules() -> list[str]:
    return sorted(module_name(p) for p in (ROOT / PACKAGE).rglob("*.py"))


def find_cycle() -> list[str] | None:
    """One import cycle among the package's modules (as a list of names), or None.

    A package's ``__init__`` running its submodules is not a cycle of ours: the edge from a
    module to the packages above it is left out.
    """
    graph = {
        m: {d for d in direct_imports(m) if not m.startswith(d + ".")} for m in all_modules()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in graph:
        if m not in state and (cycle := visit(m)):
            return cycle
    return None
