"""The shape of the house (docs/architecture.md): layers, no circles, small modules, light commands.

Why as tests: a layout only stays readable while nothing can quietly import upwards, grow a
module past what one reader holds in mind, or hide a broken import behind a fallback.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.imports import LAYERS, REPO, cycles, edges, layer, project_modules

MAX_LINES = 500
RANK = {name: i for i, name in enumerate(LAYERS)}


def test_imports_only_go_down_the_layers() -> None:
    upward = [f"{e.source}:{e.line} imports {e.target}" for e in edges()
              if layer(e.source) and layer(e.target) and RANK[layer(e.target)] > RANK[layer(e.source)]]
    assert not upward, "\n".join(upward)


def test_reference_is_a_leaf() -> None:
    wrong = [f"{e.source}:{e.line} imports {e.target}" for e in edges()
             if e.source.startswith("reference") and not e.target.startswith("reference")]
    assert not wrong, "\n".join(wrong)


def test_there_are_no_import_circles() -> None:
    assert cycles(edges()) == []


def test_commands_never_import_each_other() -> None:
    wrong = [f"{e.source}:{e.line} imports {e.target}" for e in edges()
             if layer(e.source) == layer(e.target) == "commands" and e.target != "harness.commands"]
    assert not wrong, "\n".join(wrong)


def test_every_module_is_small_enough_to_read() -> None:
    long = {name: n for name, path in project_modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_every_harness_module_sits_in_a_layer() -> None:
    loose = [name for name in project_modules()
             if name.startswith("harness.") and layer(name) is None and name != "harness.cli"]
    assert not loose, loose


def _guards_project_import(node: ast.Try) -> bool:
    caught = {ast.unparse(handler.type) for handler in node.handlers if handler.type is not None}
    if not caught & {"ImportError", "ModuleNotFoundError"}:
        return False
    for inner in ast.walk(ast.Module(body=node.body, type_ignores=[])):
        names = ([a.name for a in inner.names] if isinstance(inner, ast.Import)
                 else [inner.module or ""] if isinstance(inner, ast.ImportFrom) else [])
        if any(name.split(".")[0] in ("harness", "reference") for name in names):
            return True
    return False


def test_no_import_error_fallbacks_around_our_own_modules() -> None:
    found = [f"{name}:{node.lineno}" for name, path in project_modules().items()
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Try) and _guards_project_import(node)]
    assert not found, found


@pytest.mark.parametrize("argv", [
    ["systems"], ["systems", "cpu", "--json"], ["check", "--help"], ["report", "--help"],
    ["data", "--dataset", "synthetic-small", "--json"],
    ["--system", "cpu", "--dataset", "synthetic-small", "--dry-run"],
    ["--system", "tpu-v3-8", "--dry-run"],
])
def test_commands_that_do_not_train_never_import_tensorflow(argv: list[str], tmp_path: Path) -> None:
    code = ("import sys\nfrom harness.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as exit_:\n    rc = exit_.code\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code, *argv, *(["--results-dir", str(tmp_path)] if "--dry-run" in argv else [])],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, NCF_CACHE_DIR=str(tmp_path / "cache")))
    assert done.returncode == 0, done.stderr[-2000:]
