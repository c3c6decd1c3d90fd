"""The project's import graph, read from the source with `ast` (nothing is imported).

Why a helper of its own: the layer rule of docs/architecture.md is checked by a test, and the
same graph answers "which modules import X" when a rule fails.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
PROJECT_PACKAGES = ("harness", "reference")

# Bottom to top. A module may import its own package's modules and any package below it.
LAYERS = ("core", "data", "results", "distribute", "train", "compliance", "run", "report", "measure", "commands")


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` at `line` (inside a function when `deferred`)."""

    source: str
    target: str
    line: int
    deferred: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every module of harness/ and reference/, by dotted name."""
    return {module_name(p): p for package in PROJECT_PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to: itself, or its package for `from pkg import function`."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def edges() -> list[Edge]:
    """Every import of a project module by a project module (`from a import b` counts a.b when b is a module)."""
    modules = project_modules()
    found = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            deferred, up = False, parents.get(node)
            while up is not None:
                deferred = deferred or isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef))
                up = parents.get(up)
            for name in names:
                if name.split(".")[0] in PROJECT_PACKAGES:
                    target = _resolve(name, modules)
                    if target and target != source:
                        found.append(Edge(source, target, node.lineno, deferred))
    return found


def layer(module: str) -> str | None:
    """The harness layer a module belongs to (None for harness/__init__, cli and reference)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "harness" and len(parts) > 1 and parts[1] in LAYERS else None


def cycles(graph: list[Edge]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), sorted."""
    adjacency: dict[str, set[str]] = {}
    for edge in graph:
        adjacency.setdefault(edge.source, set()).add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in adjacency.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(adjacency):
        if node not in index:
            visit(node)
    return sorted(groups)
