"""Unwritable folders as one sentence: probe a folder before the work, and name it when a write fails.

Why: a results root, a report folder or a cache the user cannot write to used to surface as a
`PermissionError` traceback, and for a run only after TensorFlow had started and the data had
been prepared. Write sites go through `writing_to`, which turns an `OSError` into
`cannot write to PATH (REASON): choose a writable FLAG.`; work that is long or must not start
half-way (a run, a report, a data preparation) calls `require_writable_dir` first.
docs/architecture.md lists what is written where.

The probe really creates (and removes) a file: `os.access` answers from local mode bits, and for
root it says "writable" where the write still fails (an NFS export that squashes root, a
security module). It creates
no folders: a run stopped at the hardware gate must not leave an empty `results/<system>/ncf/`
behind (which `check` would flag), so a folder that does not exist yet is probed through its
nearest existing parent, the folder it would be created in.
"""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness.core.errors import UserError

_PROBE_PREFIX = ".ncf-write-probe-"


def cannot_write(path: str | os.PathLike, exc: OSError, what: str) -> UserError:
    """The one sentence for an unwritable `path`; `what` is the flag (or variable) that moves it."""
    reason = os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)
    return UserError(f"cannot write to {os.fspath(path)} ({reason}): choose a writable {what}.")


@contextmanager
def writing_to(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn an `OSError` raised inside the block into `cannot_write(path, ...)`.

    Wrap only local writes: a network error is an `OSError` too, and would be blamed on `path`.
    """
    try:
        yield
    except OSError as exc:
        raise cannot_write(path, exc, what) from exc


def require_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Check that files can be created in folder `path` (or where it would be created); return it.

    The error names the folder that refused: `path` itself, or its nearest existing parent when
    `path` does not exist yet.
    """
    target = Path(path)
    with writing_to(target, what):
        folder = _nearest_existing(target)
    with writing_to(folder, what):
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(folder))
        fd, probe = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=folder)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            os.unlink(probe)
    return target


def _nearest_existing(path: Path) -> Path:
    """`path` if it exists, else its closest parent that does (".", "/" at the latest)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary folder, or the one sentence when no temporary area can be written.

    Python already skips unwritable candidates ($TMPDIR, /tmp, ...), so this fails only when none
    is left or the one it chose filled up; `tempfile.tempdir` is that one once it was chosen.
    """
    try:
        return tempfile.TemporaryDirectory(prefix=prefix)
    except OSError as exc:
        raise cannot_write(tempfile.tempdir or "any temporary folder", exc, "TMPDIR") from exc
