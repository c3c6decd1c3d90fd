"""Where the project lives and where its defaults point: the one module that knows the layout.

Why one module: the repository root was derived from `__file__` in five places, each counting
parent folders; moving a module silently pointed one of them elsewhere. Everything that needs
the root, the profiles folder, the default results root or the entry script asks here.
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent   # harness/core/paths.py -> the checkout
SYSTEMS_DIR = REPO_ROOT / "systems"                         # the profiles (templates) shipped with the project
DEFAULT_RESULTS_ROOT = REPO_ROOT                            # results/<system>/ncf/ and systems/ live here
RUN_BENCHMARK = REPO_ROOT / "run_benchmark.py"              # the entry point, for commands that start runs
