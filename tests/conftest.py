"""Shared pytest set-up: quiet TensorFlow with the harness's runtime environment, the repo on sys.path,
and paths to ../shared."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from harness.core.tf_runtime import apply_runtime_environment  # noqa: E402
from support.paths import SHARED  # noqa: E402

apply_runtime_environment()   # TensorFlow in the tests allocates as in the product's commands


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repo; tests that need it skip with a reason when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (the project's shared reference data)")
    return SHARED
