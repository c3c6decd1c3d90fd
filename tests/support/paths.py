"""Where the tests find the project and its shared reference data."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"   # reference data beside the checkout; tests that need it skip when absent
