"""A submission root like a fresh clone's after the README quick start, for the check and report tests.

Why: in a fresh clone the quick start writes into the project itself, whose `systems/cpu.json` is
the profile (a template with "detect" fields, never overwritten). The tests must not write into
the checkout, so this root holds a copy of that profile and results written by a real run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.core.paths import RUN_BENCHMARK, SYSTEMS_DIR

PROFILE = "cpu"


def quick_start_root(root: Path) -> Path:
    """`root` with systems/cpu.json (the template) and one real synthetic-small run of one epoch."""
    (root / "systems").mkdir(parents=True)
    shutil.copy(SYSTEMS_DIR / f"{PROFILE}.json", root / "systems" / f"{PROFILE}.json")
    args = ["--system", PROFILE, "--dataset", "synthetic-small", "--max-epochs", "1", "--seed", "0",
            "--results-dir", str(root), "--quiet"]
    env = dict(os.environ, NCF_CACHE_DIR=str(root / "cache"), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(RUN_BENCHMARK), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.rmtree(root / "cache")   # the report and check read results/ and systems/ only
    return root
