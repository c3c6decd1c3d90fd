"""This process's own CPU time, page faults and peak memory, read the same way by every command that reports them.

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


def minor_page_faults() -> int:
    """Minor page faults of this process so far: pages the kernel mapped (and zeroed) on first touch.

    Why: how many a training step takes shows whether its buffers are reused or faulted in
    afresh every step (see harness.core.tf_runtime on the allocator).
    """
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
