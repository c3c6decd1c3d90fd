"""The random-read floor of an epoch's sampling: what this machine's memory allows, measured.

Why: generating an epoch (harness.data.sampling) is bound by random memory reads, not by
arithmetic. Every example reads its training positive's (user, item) pair, 8 bytes at a random
index of a table of 8 bytes per positive (160 MB at ml-20m), and every negative reads a byte of
the users x items bitmap (463 MB) at a random index. Those reads are about half of the compiled
kernel's time (harness.data.epoch_kernel, 41-48% here), and the epoch's time moves with the machine's memory
latency from one minute to the next. So `throughput` and `data --bench-sampling` time these two
kinds of read on the real tables, in as many threads as the sampler uses, and report the
epoch's time as a multiple of what the reads alone take: as training is reported against the
matmul rate, a ratio in one invocation instead of a bare number of seconds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.data import epoch_kernel
from harness.data.sampling import DEFAULT_WORKERS, in_parallel, packed_positives, positive_set
from reference.constants import NUM_NEG

if TYPE_CHECKING:
    from harness.data.prepare import PreparedData

PROBE_READS = 1 << 22   # random reads per table and repeat: about 0.1 s each here


@dataclass
class ReadFloor:
    """Wall-clock ns per random read with all workers reading side by side, and an epoch's total."""
    pair_read_ns: float           # 8-byte read of the positives table
    bitmap_read_ns: float | None  # 1-byte read of the bitmap; None where membership uses sorted keys
    pair_reads: int               # one per example of the epoch
    bitmap_reads: int             # one per negative (first draws; rejected draws add a few)
    workers: int
    seconds: float                # pair_reads * pair_read_ns + bitmap_reads * bitmap_read_ns


def random_read_ns(table: np.ndarray, index_dtype: type, reads: int = PROBE_READS, workers: int | None = None,
                   repeats: int = 3, seed: int = 0) -> float:
    """Best wall-clock ns per read of `reads` uniformly random elements of `table`, in `workers` threads.

    The reads go through the compiled kernel's gather loop where numba is present, else np.take,
    with indices of `index_dtype`: the way the sampler's own reads are made.
    """
    if table.size == 0:
        raise ValueError("cannot time reads of an empty table")
    index = np.random.default_rng(seed).integers(0, table.size, reads).astype(index_dtype)
    out = np.empty(reads, dtype=table.dtype)

    def work(start: int, stop: int) -> None:
        if epoch_kernel.AVAILABLE:
            epoch_kernel.gather(table, index[start:stop], out[start:stop], stop - start)
        else:
            np.take(table, index[start:stop], out=out[start:stop])

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        in_parallel(0, reads, work, workers, grain=1 << 16)
        best = min(best, time.perf_counter() - t0)
    return best / reads * 1e9


def epoch_read_floor(data: PreparedData, num_neg: int = NUM_NEG, reads: int = PROBE_READS,
                     workers: int | None = None) -> ReadFloor:
    """The time one epoch's random reads take on `data`'s own tables (built here if not yet)."""
    positives = positive_set(data)
    pair_ns = random_read_ns(packed_positives(data), np.int64, reads, workers)
    bitmap_ns = None if positives.bitmap is None else random_read_ns(positives.bitmap, positives.index_dtype,
                                                                       reads, workers)
    pair_reads = data.num_train * (1 + num_neg)
    bitmap_reads = data.num_train * num_neg if bitmap_ns is not None else 0
    seconds = (pair_reads * pair_ns + bitmap_reads * (bitmap_ns or 0.0)) / 1e9
    return ReadFloor(pair_ns, bitmap_ns, pair_reads, bitmap_reads, workers or DEFAULT_WORKERS, seconds)
