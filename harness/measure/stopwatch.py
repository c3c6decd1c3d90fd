"""Timing a stretch of measured work, with the CPU time this process and other processes used meanwhile.

Why its own module: on a shared machine absolute rates move with the load, so every throughput
measurement reports beside its seconds how many cores everything else used ("foreign cores"), and
the training, time-split, overlap and eval measurements all time their stretches the same way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from harness.core.process_usage import cpu_seconds, minor_page_faults
from harness.measure.peer_launcher import machine_busy_seconds


@dataclass
class Timing:
    """Wall seconds of one measured stretch, with this process' and other processes' CPU use and
    this process's minor page faults."""

    seconds: float
    own_cores: float | None
    foreign_cores: float | None
    page_faults: int = 0


class Stopwatch:
    """Times a stretch and how many cores this process and everything else used meanwhile.

    Foreign cores come from /proc/stat (whole machine busy time minus ours), read as the peer's
    launcher reads them; elsewhere they are None.
    """

    def __enter__(self) -> "Stopwatch":
        self._busy0 = machine_busy_seconds()
        self._own0 = cpu_seconds()
        self._faults0 = minor_page_faults()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        own = cpu_seconds() - self._own0
        busy = machine_busy_seconds()
        foreign = None if busy is None or self._busy0 is None else max(0.0, (busy - self._busy0) - own) / seconds
        self.timing = Timing(seconds, own / seconds, foreign, minor_page_faults() - self._faults0)


def wait_until_quiet(limit_s: int, threshold: float = 0.3, window_s: float = 5.0) -> float | None:
    """Wait up to `limit_s` for other processes to use fewer than `threshold` cores; the last reading."""
    waited, reading = 0.0, None
    while waited < limit_s:
        with Stopwatch() as watch:
            time.sleep(window_s)
        reading = watch.timing.foreign_cores
        if reading is None or reading < threshold:
            return reading
        waited += window_s
    return reading
