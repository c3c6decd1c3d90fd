"""A compiled rendering of one epoch's examples: the numpy sampler's draws, bit for bit, faster.

Why: an epoch of synthetic-ml20m is 99.3M positions, and each costs two random reads (its
positive's (user, item) pair from a 160 MB table, the bitmap byte that says whether a drawn
negative is a positive, 463 MB) and a few dozen integer operations. numpy does those operations
as whole-array passes over 65,536-element chunks, about thirty of them; here they run in loops
compiled by numba, with every random read in a loop of its own that does nothing else (a pure
gather), where the CPU keeps many cache misses in flight. On this 2-core machine that is
1.4-1.5x faster than numpy with both cores (1.8x on one); `data --bench-sampling` times both in
one invocation. Earlier attempts that mixed each position's reads and arithmetic in one loop
body were no faster than numpy: the reads then wait on each other and on mispredicted branches
(docs/performance.md, "Tried and left out").

Exactness: the same stateless hash, Feistel rounds, cycle walking and rejection as
harness.data.sampling, in uint64 / int64 arithmetic with the same wrap-around; the tests compare
both renderings array for array. Branch-free where numpy is (the masked add of a Feistel round,
the positive/negative select) so that no random branch stalls the loops.

Only the bitmap form of the membership test is compiled; data whose bitmap would exceed
`BITMAP_MAX_BYTES` (sorted-key binary search) uses the numpy rendering. numba releases the GIL
(`nogil`), so the sampler's worker threads run the kernel side by side, and `cache=True` keeps
the machine code between processes (compiling takes a few seconds once per machine).
"""
from __future__ import annotations

import numpy as np

from harness.data.rng import ATTEMPT_STEP, GOLDEN, splitmix64

try:
    import numba
except ImportError:  # pragma: no cover - numba is a declared dependency; this keeps numpy usable without it
    numba = None

AVAILABLE = numba is not None
CHUNK = 1 << 14   # positions per pass: the passes' buffers (about 0.5 MB) stay in L2


def _njit(**options):
    """numba.njit with `options`, or the plain function where numba is absent (never called then)."""
    def wrap(function):
        return numba.njit(**options)(function) if AVAILABLE else function
    return wrap


# The same splitmix64 finaliser and stream constants as the numpy sampler's, compiled for scalars.
_mix = _njit(inline="always")(splitmix64)


@_njit(inline="always")
def _rounds(left, right, moduli, tables):
    """The Feistel rounds of EpochPermutation._rounds on one (left, right) pair."""
    for r in range(moduli.size):
        mixed = np.int64(tables[r, right]) + left
        mixed += (mixed >> 63) & moduli[r]
        left = right
        right = mixed
    return left * moduli[moduli.size - 1] + right


@_njit(nogil=True, cache=True, boundscheck=False)
def gather(source, index, out, count):
    """out[:count] = source[index[:count]]: a loop with nothing but the random reads.

    Faster than np.take on the same indices here (about 13-19 ns against 26-36 ns per read of the
    160 MB table, one thread), which is why the kernel's reads are made by it.
    """
    for i in range(count):
        out[i] = source[index[i]]


@_njit(nogil=True, cache=True, boundscheck=False)
def fill(lo, hi, offset, size, b, moduli, tables, total, packed, key, bitmap, row_bytes, num_items,
         users, items, labels):  # pragma: no cover - compiled; covered through its callers
    """Positions [lo, hi) of the epoch into users/items/labels[offset:offset + hi - lo]."""
    n = np.uint64(num_items)
    classes = size // total        # the positive and its num_neg negatives
    examples = np.empty(CHUNK, np.int64)
    pairs = np.empty(CHUNK, np.int64)
    index = np.empty(CHUNK, np.int64)
    drawn = np.empty(CHUNK, np.int64)
    bytes_ = np.empty(CHUNK, np.uint8)
    for start in range(lo, hi, CHUNK):
        count = min(hi, start + CHUNK) - start
        # 1. Permutation: position s = row * b + column; rows advance without a division.
        row = start // b
        column = start - row * b
        walk = 0
        for i in range(count):
            x = _rounds(row, column, moduli, tables)
            examples[i] = x
            walk += x >= size
            column += 1
            if column == b:
                column = 0
                row += 1
        if walk:  # cycle walking, as EpochPermutation._walk
            for i in range(count):
                x = examples[i]
                while x >= size:
                    high = x // b
                    x = _rounds(high, x - high * b, moduli, tables)
                examples[i] = x
        # 2. The positive behind each example: example e is number e // total of positive e % total.
        # Counted by comparisons, not a division: 1 + num_neg of them (5 in the closed division).
        for i in range(count):
            e = examples[i]
            which = 0
            for k in range(1, classes):
                which += e >= k * total
            index[i] = e - which * total
        gather(packed, index, pairs, count)
        # 3. First draw for every position (a positive's is unused) and its bitmap byte.
        for i in range(count):
            h = _mix(np.uint64(examples[i]) * GOLDEN + key)
            item = np.int64(((h >> np.uint64(32)) * n) >> np.uint64(32))
            drawn[i] = item
            index[i] = (pairs[i] & 0xFFFFFFFF) * row_bytes + (item >> 3)
        gather(bitmap, index, bytes_, count)
        # 4. Write out; a positive keeps its own item.
        out = offset + start - lo
        for i in range(count):
            positive = examples[i] < total
            pair = pairs[i]
            users[out + i] = pair & 0xFFFFFFFF
            items[out + i] = (pair >> 32) if positive else drawn[i]
            labels[out + i] = np.float32(positive)
        # 5. Rejection: a drawn training positive is redrawn with the next attempt (rare).
        for i in range(count):
            item = drawn[i]
            if examples[i] >= total and (bytes_[i] >> (item & 7)) & 1:
                base = np.uint64(examples[i]) * GOLDEN + key
                user_row = (pairs[i] & 0xFFFFFFFF) * row_bytes
                attempt = np.uint64(1)
                while True:
                    h = _mix(base + attempt * ATTEMPT_STEP)
                    item = np.int64(((h >> np.uint64(32)) * n) >> np.uint64(32))
                    if not (bitmap[user_row + (item >> 3)] >> (item & 7)) & 1:
                        break
                    attempt += np.uint64(1)
                items[out + i] = item
