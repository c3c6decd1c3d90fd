"""Eval negatives, training negatives and the epoch shuffle: counter-based, so any slice regenerates.

Every random choice is a pure function of (seed, purpose, epoch) and an integer counter, never of
what was generated before. That is what lets each host of a multi-host run generate only its own
shard of an epoch and still get exactly the examples a single host would have given it, and what
makes a run reproducible from its seed alone.

- Randomness: a 64-bit key per stream, `stream_key(seed, purpose, epoch)`, and the splitmix64
  finaliser over `counter * golden + key (+ attempt * step)` as a stateless integer hash (uint64
  numpy arrays). An item is drawn from the top 32 bits by multiply-shift, `(h >> 32) * n >> 32`,
  whose bias is below n / 2**32 (under 1e-5 at ml-20m's 26,744 items).
- Negatives exclude the user's training positives by rejection: a candidate that is a positive is
  redrawn with the next attempt number of the same counter. Rejection keeps the draw exactly
  uniform over the user's non-positives (the held-out test item included, as docs/reference-facts.md §2-3 ask),
  and costs little because users rate a small share of the catalogue. Membership is a bitmap of
  users x items (463 MB at ml-20m) when it fits in `BITMAP_MAX_BYTES`, else a binary search in
  the sorted keys `user * num_items + item`.
- Eval negatives: counter `user * num_neg + j` under the eval key, so they depend only on
  (seed, user): any split of the users across replicas gets the same rows.
- Training epoch: examples are indexed as the reference lays them out, e in [0, N * (1 + num_neg))
  with N training positives: e < N is positive e; otherwise it is negative number e // N of
  positive e % N, drawn with counter e under the epoch's key. The shuffled order is a pseudo-random
  permutation of that index: a 4-round Feistel network over Z_a x Z_b (a * b >= M, a ~ b ~ sqrt(M))
  whose round functions are random lookup tables (drawn with the same hash, keyed by seed, epoch
  and round), with cycle walking for the few values >= M. Position s of the epoch holds example perm(s), so the
  examples at positions [lo, hi) are computed without touching the rest: that is a shard.
- Two renderings of an epoch, with identical arrays: the numpy passes below, and a numba-compiled
  kernel (harness.data.epoch_kernel, about 1.4x faster here) used wherever numba and the bitmap are.
"""
from __future__ import annotations

import concurrent.futures
import math
import os
import threading
import weakref
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

import numpy as np

from harness.data.rng import ATTEMPT_STEP, GOLDEN, splitmix64
from reference.constants import NUM_EVAL_NEGATIVES, NUM_NEG

if TYPE_CHECKING:
    from harness.data.prepare import PreparedData

T = TypeVar("T")
BITMAP_MAX_BYTES = 1 << 30
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)  # threads per call; the result never depends on it
_CHUNK = 1 << 16                       # elements per vectorised step: keeps temporaries in cache
_EVAL, _TRAIN, _SHUFFLE, _ROUND = 0xE7A1, 0x7AA1, 0x5F1E, 0x4D1D  # purpose tags of the random streams
_FEISTEL_ROUNDS = 4



def stream_key(seed: int, purpose: int, epoch: int = 0) -> np.uint64:
    """The 64-bit key of one random stream, e.g. (seed, training negatives, epoch 3)."""
    state = np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    for part in (purpose, epoch):
        state = splitmix64(state * GOLDEN + np.uint64(part & 0xFFFFFFFFFFFFFFFF))
    return state[0]


def _uniform(base: np.ndarray, attempt: int, n: int) -> np.ndarray:
    """int32 in [0, n) (n < 2**31) from the hash of (base, attempt); base = counter * golden + key."""
    h = splitmix64(base + np.uint64((attempt * int(ATTEMPT_STEP)) & 0xFFFFFFFFFFFFFFFF))
    h >>= np.uint64(32)
    h *= np.uint64(n)
    h >>= np.uint64(32)
    return h.astype(np.int32)


class PositiveSet:
    """Vectorised membership test for training positives (user, item).

    A bitmap with one row of ceil(num_items / 8) bytes per user when it fits in
    `bitmap_max_bytes` (463 MB at ml-20m): one gather per query, indexed in int32 when the bitmap
    is below 2 GiB. Otherwise a binary search in the sorted keys `user * num_items + item`.
    """

    def __init__(self, data: PreparedData, bitmap_max_bytes: int = BITMAP_MAX_BYTES):
        if data.num_items >= 1 << 31:
            raise ValueError("item ids must stay below 2**31 (int32)")
        self.num_items = data.num_items
        keys = data.train_users.astype(np.int64) * data.num_items + data.train_items  # sorted (CSR)
        keys = keys[np.append(True, keys[1:] != keys[:-1])]
        distinct_per_user = np.bincount(keys // data.num_items, minlength=data.num_users)
        if distinct_per_user.size and distinct_per_user.max() >= data.num_items:
            user = int(np.argmax(distinct_per_user))
            raise ValueError(f"user {user} has every item as a training positive; no negative exists")
        self.row_bytes = -(-data.num_items // 8)
        size = data.num_users * self.row_bytes
        self.bitmap: np.ndarray | None = None  # uint8; bit i % 8 of byte u * row_bytes + i // 8
        self.keys: np.ndarray | None = None
        self.index_dtype = np.int32 if size < 1 << 31 else np.int64
        if size <= bitmap_max_bytes:
            self.bitmap = np.zeros(size, dtype=np.uint8)
            byte = data.train_users.astype(np.int64) * self.row_bytes + (data.train_items >> 3)
            first = np.flatnonzero(np.append(True, byte[1:] != byte[:-1]))  # CSR order: runs per byte
            bits = np.left_shift(1, data.train_items & 7).astype(np.uint8)
            self.bitmap[byte[first]] = np.bitwise_or.reduceat(bits, first)
        else:
            self.keys = keys

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool array: whether each (users[i], items[i]) is a training positive."""
        if self.bitmap is not None:
            index = users.astype(self.index_dtype) * self.index_dtype(self.row_bytes)
            index += items >> 3
            return ((np.take(self.bitmap, index) >> (items & 7)) & 1).astype(bool)
        assert self.keys is not None
        keys = users.astype(np.int64) * self.num_items + items
        found = np.searchsorted(self.keys, keys)
        return self.keys[np.minimum(found, self.keys.size - 1)] == keys


_TABLES: "weakref.WeakKeyDictionary[PreparedData, dict[str, object]]" = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def _table(data: PreparedData, name: str, build: Callable[[], T]) -> T:
    """A per-dataset table built once (the runner asks for negatives every epoch)."""
    with _TABLES_LOCK:
        tables = _TABLES.setdefault(data, {})
        if name not in tables:
            tables[name] = build()
        return tables[name]  # type: ignore[return-value]


def positive_set(data: PreparedData) -> PositiveSet:
    """The PositiveSet of `data`, built once per dataset object."""
    return _table(data, "positives", lambda: PositiveSet(data))


def packed_positives(data: PreparedData) -> np.ndarray:
    """int64 [N] whose bytes are the int32 pair (user, item) of each training positive.

    One gather of these fetches both halves (one cache miss instead of two); viewing the result
    as int32 pairs splits them without arithmetic.
    """
    def build() -> np.ndarray:
        pairs = np.empty((data.num_train, 2), dtype=np.int32)
        pairs[:, 0] = data.train_users
        pairs[:, 1] = data.train_items
        return pairs.view(np.int64).reshape(-1)

    return _table(data, "packed", build)


def build_tables(data: PreparedData) -> None:
    """Build the per-dataset lookup tables now (e.g. before a timed region), not at first use.

    Also renders a few positions of an epoch, so that the compiled epoch kernel is compiled (or
    loaded from numba's cache) here rather than inside the first timed epoch.
    """
    positive_set(data)
    packed_positives(data)
    epoch_examples(data, seed=0, epoch=0, num_shards=max(1, data.num_train))


def _negatives(users: np.ndarray, counters: np.ndarray, key: np.uint64, positives: PositiveSet) -> np.ndarray:
    """int32 negative per (user, counter): uniform over the user's non-positives, by rejection."""
    base = counters.astype(np.uint64) * GOLDEN + key
    items = _uniform(base, 0, positives.num_items)
    redo = np.flatnonzero(positives.contains(users, items))
    attempt = 1
    while redo.size:
        candidates = _uniform(base[redo], attempt, positives.num_items)
        items[redo] = candidates
        redo = redo[positives.contains(users[redo], candidates)]
        attempt += 1
    return items


def in_parallel(lo: int, hi: int, work: Callable[[int, int], None], workers: int | None, grain: int) -> None:
    """Run `work(start, stop)` over `workers` contiguous parts of [lo, hi) in threads.

    Every draw depends only on its counter, so the split changes nothing in the result; numpy
    releases the GIL inside its loops, so the parts really run side by side. Parts get at least
    `grain` units each (no threads for small jobs).
    """
    workers = max(1, min(workers or DEFAULT_WORKERS, -(-(hi - lo) // grain)))
    bounds = [lo + (hi - lo) * k // workers for k in range(workers + 1)]
    if workers == 1:
        work(lo, hi)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sampling") as pool:
        for future in [pool.submit(work, a, b) for a, b in zip(bounds[:-1], bounds[1:])]:
            future.result()


def eval_negatives(data: PreparedData, seed: int, num_neg: int = NUM_EVAL_NEGATIVES,
                   positives: PositiveSet | None = None, workers: int | None = None) -> np.ndarray:
    """int32 [num_users, num_neg]: each user's eval negatives, with replacement, in drawing order."""
    positives = positives or positive_set(data)
    key = stream_key(seed, _EVAL)
    out = np.empty((data.num_users, num_neg), dtype=np.int32)
    users_per_chunk = max(1, _CHUNK // max(1, num_neg))

    def work(first: int, last: int) -> None:
        for lo in range(first, last, users_per_chunk):
            hi = min(last, lo + users_per_chunk)
            users = np.repeat(np.arange(lo, hi, dtype=np.int32), num_neg)
            counters = np.arange(lo * num_neg, hi * num_neg, dtype=np.int64)
            out[lo:hi] = _negatives(users, counters, key, positives).reshape(hi - lo, num_neg)

    in_parallel(0, data.num_users, work, workers, grain=users_per_chunk)
    return out


def training_negatives(data: PreparedData, seed: int, epoch: int, start: int, stop: int, num_neg: int = NUM_NEG,
                       positives: PositiveSet | None = None) -> np.ndarray:
    """int32 [stop - start, num_neg]: the epoch's negatives of training positives [start, stop).

    Negative j of positive p is example (j + 1) * N + p of the epoch, the same draw
    `epoch_examples` makes for it.
    """
    positives = positives or positive_set(data)
    key = stream_key(seed, _TRAIN, epoch)
    total = data.num_train
    out = np.empty((stop - start, num_neg), dtype=np.int32)
    per_chunk = max(1, _CHUNK // max(1, num_neg))
    for lo in range(start, stop, per_chunk):
        hi = min(stop, lo + per_chunk)
        p = np.arange(lo, hi, dtype=np.int64)
        examples = (np.arange(1, num_neg + 1, dtype=np.int64)[np.newaxis, :] * total + p[:, np.newaxis]).reshape(-1)
        users = np.repeat(data.train_users[lo:hi], num_neg)
        out[lo - start:hi - start] = _negatives(users, examples, key, positives).reshape(hi - lo, num_neg)
    return out


class EpochPermutation:
    """A pseudo-random permutation of [0, size) evaluated pointwise (see the module docstring).

    Halves live in int32 (a, b <= 2**31 for any size below 2**62) and each round table stores
    T - modulus, so `table[right] + left` lies in [-modulus, modulus) and one masked add reduces
    it: an in-cache gather and three int32 operations per round. Random tables as round functions
    make a 4-round Feistel network a strong pseudo-random permutation (Luby-Rackoff).
    """

    def __init__(self, size: int, key: np.uint64, rounds: int = _FEISTEL_ROUNDS):
        if size >= 1 << 62:
            raise ValueError("epochs of 2**62 examples or more are not supported")
        self.size = size
        self.a = max(1, math.isqrt(max(0, size - 1)) + 1)
        self.b = max(1, -(-size // self.a))
        # Round r maps (L in Z_m, R in Z_n) to (R, (L + T_r[R]) mod m); (m, n) alternate (a, b), (b, a).
        self.rounds: list[tuple[np.int32, np.ndarray]] = []
        for r in range(rounds):
            m, n = (self.a, self.b) if r % 2 == 0 else (self.b, self.a)
            table = _uniform(np.arange(n, dtype=np.uint64) * GOLDEN + stream_key(int(key), _ROUND, r), 0, m)
            self.rounds.append((np.int32(m), (table - m).astype(np.int32)))

    def stacked(self) -> tuple[np.ndarray, np.ndarray]:
        """(moduli int64 [rounds], tables int32 [rounds, max(a, b)] zero-padded): the rounds as two arrays."""
        moduli = np.array([modulus for modulus, _ in self.rounds], dtype=np.int64)
        tables = np.zeros((len(self.rounds), max(self.a, self.b)), dtype=np.int32)
        for r, (_, table) in enumerate(self.rounds):
            tables[r, :table.size] = table
        return moduli, tables

    def _rounds(self, left: np.ndarray, right: np.ndarray, rounds: list[tuple[np.int32, np.ndarray]]) -> np.ndarray:
        for modulus, table in rounds:
            mixed = np.take(table, right)  # np.take: less overhead than fancy indexing
            mixed += left
            mixed += (mixed >> np.int32(31)) & modulus
            left, right = right, mixed
        return left.astype(np.int64) * int(self.rounds[-1][0]) + right

    def _walk(self, out: np.ndarray) -> np.ndarray:
        """Cycle walking: re-permute the (rare) values in [size, a * b) until they land below size."""
        walk = np.flatnonzero(out >= self.size)
        while walk.size:
            high = out[walk] // self.b
            moved = self._rounds(high.astype(np.int32), (out[walk] - high * self.b).astype(np.int32), self.rounds)
            out[walk] = moved
            walk = walk[moved >= self.size]
        return out

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """Examples (int64) at arbitrary positions."""
        high = positions // self.b
        return self._walk(self._rounds(high.astype(np.int32), (positions - high * self.b).astype(np.int32),
                                       self.rounds))

    def chunks(self, lo: int, hi: int, target: int = _CHUNK) -> Iterator[tuple[int, int, np.ndarray]]:
        """(start, stop, examples at positions [start, stop)) covering [lo, hi) in order.

        Chunks follow whole rows of b positions (s = L * b + R), where the first round needs no
        gather: over R = 0..b-1 its table lookup is the table itself.
        """
        rows_per_chunk = max(1, target // self.b)
        first_modulus, first_table = self.rounds[0]
        columns = np.arange(self.b, dtype=np.int32)
        row = lo // self.b
        while row * self.b < hi:
            rows = np.arange(row, min(row + rows_per_chunk, -(-hi // self.b)), dtype=np.int32)
            mixed = rows[:, np.newaxis] + first_table[np.newaxis, :]
            mixed += (mixed >> np.int32(31)) & first_modulus
            start, stop = max(lo, row * self.b), min(hi, (rows[-1] + 1) * self.b)
            cut = slice(start - row * self.b, stop - row * self.b)
            left = np.broadcast_to(columns, mixed.shape).reshape(-1)[cut]
            yield start, stop, self._walk(self._rounds(left, mixed.reshape(-1)[cut], self.rounds[1:]))
            row += rows.size


def shard_bounds(total: int, shard: int, num_shards: int) -> tuple[int, int]:
    """[lo, hi) of shard `shard` when `total` positions are cut into `num_shards` contiguous parts."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is not in [0, {num_shards})")
    return shard * total // num_shards, (shard + 1) * total // num_shards


def shard_ranges(size: int, shard: int, num_shards: int, block: int | None = None) -> list[tuple[int, int]]:
    """The position ranges of one shard: one contiguous slice, or every num_shards-th block.

    With `block` = global batch // hosts, host h's k-th block is exactly its part of global step
    k of the unsharded epoch, so a multi-host run trains on the same global batches, in the same
    order, as a single host.
    """
    if block is None:
        return [shard_bounds(size, shard, num_shards)]
    if block < 1:
        raise ValueError(f"block must be positive, got {block}")
    shard_bounds(size, shard, num_shards)  # validates shard
    starts = range(shard * block, size, block * num_shards)
    return [(start, min(start + block, size)) for start in starts]


EpochArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def epoch_length(data: PreparedData, num_neg: int = NUM_NEG, shard: int = 0, num_shards: int = 1,
                 block: int | None = None) -> int:
    """How many examples `epoch_examples` returns for this shard (every epoch has the same count)."""
    return sum(hi - lo for lo, hi in shard_ranges(data.num_train * (1 + num_neg), shard, num_shards, block))


def written_epoch_arrays(length: int) -> EpochArrays:
    """Arrays for `epoch_examples(..., out=)` whose pages are already faulted in and zeroed.

    Why: the first epoch of a run otherwise writes 1.2 GB (ml-20m) into fresh memory, and the
    operating system's page faults and zeroing added 0.1-1.6 s to it here. A run allocates these
    during init, as it allocates its model, so that its first timed epoch costs what every later
    one does.
    """
    arrays = (np.empty(length, dtype=np.int32), np.empty(length, dtype=np.int32), np.empty(length, dtype=np.float32))
    for array in arrays:
        array.fill(0)
    return arrays


def _check_out(out: EpochArrays, length: int) -> None:
    for array, dtype in zip(out, (np.int32, np.int32, np.float32)):
        if array.shape != (length,) or array.dtype != dtype or not array.flags.c_contiguous:
            raise ValueError(f"out arrays must be contiguous int32, int32, float32 of length {length}, "
                             f"got {array.dtype} {array.shape}")


KERNELS = ("compiled", "numpy")


def epoch_kernel(positives: PositiveSet, kernel: str | None = None) -> str:
    """Which rendering of the epoch runs: `kernel` if given, else compiled wherever it can.

    The two give identical arrays (harness.data.epoch_kernel); the compiled one needs numba and
    the bitmap form of the membership test.
    """
    from harness.data import epoch_kernel as compiled   # numba is imported only where epochs are made

    if kernel is not None and kernel not in KERNELS:
        raise ValueError(f"epoch kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    can_compile = compiled.AVAILABLE and positives.bitmap is not None
    if kernel == "compiled" and not can_compile:
        raise ValueError("the compiled epoch kernel needs numba and a positives bitmap")
    return kernel or ("compiled" if can_compile else "numpy")


def epoch_examples(data: PreparedData, seed: int, epoch: int, num_neg: int = NUM_NEG, shard: int = 0,
                   num_shards: int = 1, positives: PositiveSet | None = None, workers: int | None = None,
                   block: int | None = None, out: EpochArrays | None = None,
                   kernel: str | None = None) -> EpochArrays:
    """(users int32, items int32, labels float32): this shard's part of the shuffled epoch.

    The full epoch has every training positive once plus `num_neg` fresh negatives per positive.
    Without `block`, shard i of n is positions [i * M // n, (i + 1) * M // n) of its shuffled order,
    so the shards of any split concatenate to the unsharded epoch; with `block`, shard i holds the
    blocks i, i + n, i + 2n, ... of `block` positions (see `shard_ranges`).

    `out`: arrays of an earlier epoch to overwrite (returned). Why: an epoch is 1.2 GB at ml-20m,
    and writing it into fresh memory made the kernel fault in and zero every page of it, which
    took 2-5 s of system CPU time per epoch here, as much as half the generation itself.

    `kernel`: "compiled" or "numpy" (default: `epoch_kernel`'s choice); the arrays are the same.
    """
    from harness.data import epoch_kernel as compiled_kernel

    positives = positives or positive_set(data)
    kernel = epoch_kernel(positives, kernel)
    packed = packed_positives(data)
    total = data.num_train
    size = total * (1 + num_neg)
    ranges = shard_ranges(size, shard, num_shards, block)
    permutation = EpochPermutation(size, stream_key(seed, _SHUFFLE, epoch))
    key = stream_key(seed, _TRAIN, epoch)
    length = epoch_length(data, num_neg, shard, num_shards, block)
    if out is None:
        out = (np.empty(length, dtype=np.int32), np.empty(length, dtype=np.int32), np.empty(length, dtype=np.float32))
    else:
        _check_out(out, length)
    users, items, labels = out

    def fill(lo: int, hi: int, offset: int) -> None:
        def compiled(first: int, last: int) -> None:
            compiled_kernel.fill(first, last, offset + first - lo, permutation.size, permutation.b,
                                 moduli, tables, total, packed, key, positives.bitmap,
                                 positives.row_bytes, positives.num_items, users, items, labels)

        def work(first: int, last: int) -> None:
            for start, stop, examples in permutation.chunks(first, last):
                which = examples // total            # 0: the positive itself, j > 0: its j-th negative
                pairs = np.take(packed, examples - which * total).view(np.int32).reshape(-1, 2)
                part = slice(offset + start - lo, offset + stop - lo)
                users[part] = pairs[:, 0]
                items[part] = pairs[:, 1]
                labels[part] = which == 0
                # Only the negatives draw; a positive keeps its own item.
                drawn = np.flatnonzero(which)
                items[part][drawn] = _negatives(users[part][drawn], examples[drawn], key, positives)

        in_parallel(lo, hi, compiled if kernel == "compiled" else work, workers, grain=_CHUNK)

    if kernel == "compiled":
        moduli, tables = permutation.stacked()
    offset = 0
    for lo, hi in ranges:
        fill(lo, hi, offset)
        offset += hi - lo
    return out
