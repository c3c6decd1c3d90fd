"""Run a child process that a folder's mode bits bind, so a chmod 0555 folder is read-only to it.

Why: these tests often run as root, and root (CAP_DAC_OVERRIDE) writes into a 0555 folder as if
it were 0755, so a test of "cannot write" would pass while testing nothing. As root the child
keeps uid 0, so it still reads the checkout and a Python installed under /root (mode 0700), but
`setpriv` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding set: after exec it has
neither, and the mode bits apply to it as to anyone. As any other user a chmod alone binds, so the
prefix is empty. Where neither works the test is skipped with the reason.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SETPRIV = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")
READ_ONLY = 0o555


def unprivileged(argv: list[str]) -> list[str]:
    """`argv` as a command that mode bits bind; skips the calling test where that is impossible."""
    prefix, why_not = _prefix()
    if why_not:
        pytest.skip(why_not)
    return [*prefix, *argv]


def read_only(folder: Path) -> Path:
    """Create `folder` (with parents) if needed and make it r-x for everyone; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(READ_ONLY)
    return folder


@functools.cache
def _prefix() -> tuple[tuple[str, ...], str | None]:
    """(command prefix, None), or ((), why no child can be bound by mode bits here)."""
    if os.geteuid() != 0:
        return (), None
    if shutil.which(SETPRIV[0]) is None:
        return (), "running as root and setpriv is not installed: chmod cannot make a folder read-only"
    with tempfile.TemporaryDirectory(prefix="ncf-unprivileged-") as tmp:
        folder = read_only(Path(tmp) / "ro")
        attempt = [*SETPRIV, sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"]
        done = subprocess.run(attempt, capture_output=True, text=True, timeout=60, check=False)
    if "PermissionError" not in done.stderr:
        return (), f"running as root and setpriv could not drop CAP_DAC_OVERRIDE: {done.stderr.strip()[-200:]}"
    return SETPRIV, None
