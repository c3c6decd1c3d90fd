"""This process's own CPU time and peak memory, read the same way by every command that reports them.

Why one place: a run's summary (`cpu_cores_used`, `peak_rss_bytes`), `throughput`'s own-core
figures and `data --bench-*` all quote these numbers; reading them one way keeps them comparable.
Nothing here imports TensorFlow.
"""
from __future__ import annotations

import os
import resource
import sys


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process so far, all threads."""
    t = os.times()
    return t.user + t.system


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024
