"""Synthetic MovieLens-like ratings: deterministic from a seed, no download, any size.

Names:
- `synthetic-small`: the offline quick-start set (1,000 users, 1,600 items, 40,000 ratings).
  Small enough that a closed-division NeuMF epoch (training positives x 5 plus users x 1,000 eval
  pairs) takes a few seconds on 2 CPU cores, structured enough to learn quickly. Measured on eval
  seed 0 with match_mlperf: a random ranking gives HR@10 0.013, ranking by popularity 0.06,
  ranking by the generator's true probabilities 0.65, and the closed-division NeuMF (batch 4,096,
  Adam lr 0.002) 0.52-0.54 after 5 epochs.
- `synthetic-ml20m`: ml-20m's exact user, item and rating counts (138,493 / 26,744 / 20,000,263),
  for throughput work at full scale without the download.
- `synthetic-<base>x<k>x<m>` (e.g. `synthetic-ml20mx4x2`): the base with users x k and items x m,
  in the spirit of MLPerf's ml-20mx16x32. Ratings scale with users (x k): each user keeps a
  history as long as in the base; topics scale with items (x m), so a topic keeps its size.

The model (a rank-(T+1) non-negative factorisation, so a factorisation model can learn it):
every item has a random popularity rank and one of T topics; every user has a primary and a
secondary topic. A rating picks its source with probabilities `SOURCE_WEIGHTS` (primary topic,
secondary topic, whole catalogue), then an item of that source by Zipf's law (exponent 1) over the
source's items in rank order: position t*n of n, with t drawn from the density 1/(t + e) on [0, 1),
e = `ZIPF_OFFSET`/n. The inverse CDF of that density is closed-form, so a draw costs O(1) (no
search through per-item tables) and popularity skew is heavy, as in MovieLens. A user never rates an item twice (duplicates are redrawn,
at the end from the whole catalogue uniformly, which always terminates because no user rates
more than a quarter of the items). Every item is rated at least once: every `R // I`-th rating
of the global rating order is a fixed item of a random cover permutation, so the prepared set
has exactly `num_items` items. Every user has at least `MIN_RATINGS` ratings, with a log-normal
spread above that, summing exactly to `num_ratings`. Timestamps fall in a per-user activity
window (first rating between 2000 and 2015, window length log-normal around two months), so
leave-one-out holds out a uniformly chosen rating of each user.

Users are generated in chunks of `CHUNK_USERS`, so memory is O(users + items + ratings of one
chunk) apart from the output: users x items is never materialised. Each chunk draws from its own
random stream (seed, chunk index), which makes the result independent of how it is consumed.
Changing any constant here changes the data: bump `SYNTHETIC_VERSION` (part of the cache key).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from harness.core.errors import UserError
from reference.constants import MIN_RATINGS

SYNTHETIC_VERSION = "synth-v2"
PREFIX = "synthetic-"
DEFAULT_SEED = 0
RAW_ID_OFFSET = 1             # the raw (file) id of generated id k is k + 1, as in MovieLens files
CHUNK_USERS = 4096
ZIPF_OFFSET = 5.0             # rank r of a source has popularity ~ 1/(r + offset): a flatter head
SOURCE_WEIGHTS = (0.75, 0.15, 0.10)  # primary topic, secondary topic, whole catalogue
COUNT_SIGMA = 1.0             # log-normal spread of ratings per user above MIN_RATINGS
MAX_SHARE_OF_ITEMS = 4        # no user rates more than num_items // 4 items
FIRST_TIMESTAMP = 946_684_800  # 2000-01-01
FIRST_RATING_SPREAD_S = 15 * 365 * 86_400
MEDIAN_WINDOW_S = 60 * 86_400
MAX_WINDOW_S = 5 * 365 * 86_400
_MIXTURE_ROUNDS = 8           # redraw rounds from the user's own mixture before uniform redraws
_MAX_ROUNDS = 10_000
_STREAM_PLAN, _STREAM_CHUNK = 1, 2


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and seed of one synthetic dataset."""

    name: str
    num_users: int
    num_items: int
    num_ratings: int
    num_topics: int
    seed: int = DEFAULT_SEED

    def describe(self) -> str:
        """The generator parameters, recorded as the dataset's `source`."""
        return (f"{SYNTHETIC_VERSION}(users={self.num_users}, items={self.num_items}, "
                f"ratings={self.num_ratings}, topics={self.num_topics}, seed={self.seed})")


_BASES: dict[str, tuple[int, int, int, int]] = {
    # name: (users, items, ratings, topics)
    "small": (1_000, 1_600, 40_000, 40),
    "ml20m": (138_493, 26_744, 20_000_263, 40),
}
_NAME = re.compile(rf"{PREFIX}(?P<base>[a-z0-9]+?)(?:x(?P<users>\d+)x(?P<items>\d+))?")


def is_synthetic(name: str) -> bool:
    """Whether `name` asks for generated rather than downloaded data."""
    return name.startswith(PREFIX)


def parse_name(name: str, seed: int = DEFAULT_SEED) -> SyntheticConfig:
    """`synthetic-small`, `synthetic-ml20m` or `synthetic-<base>x<k>x<m>` -> SyntheticConfig."""
    match = _NAME.fullmatch(name)
    if match is None or match["base"] not in _BASES:
        bases = ", ".join(f"{PREFIX}{b}" for b in _BASES)
        raise UserError(f"Unknown synthetic dataset {name!r}; use {bases}, optionally scaled as "
                        f"{PREFIX}ml20mx<users factor>x<items factor>.")
    users, items, ratings, topics = _BASES[match["base"]]
    user_factor = int(match["users"] or 1)
    item_factor = int(match["items"] or 1)
    if user_factor < 1 or item_factor < 1:
        raise UserError(f"Scale factors in {name!r} must be at least 1.")
    return SyntheticConfig(name=name, num_users=users * user_factor, num_items=items * item_factor,
                           num_ratings=ratings * user_factor, num_topics=topics * item_factor, seed=seed)


@dataclass(frozen=True)
class _Plan:
    """Everything drawn once for the whole dataset: O(users + items) arrays."""

    config: SyntheticConfig
    ranked: np.ndarray         # int64: per source s (topics 0..T-1, then T = catalogue), its items by rank
    source_start: np.ndarray   # int64 [T+1]: where each source's items start in `ranked`
    source_size: np.ndarray    # int64 [T+1]
    primary: np.ndarray        # int64 [U]
    secondary: np.ndarray      # int64 [U]
    counts: np.ndarray         # int64 [U]: ratings per user
    ends: np.ndarray           # int64 [U]: cumulative counts (end of each user's global rating range)
    cover: np.ndarray          # int64 [I]: the item forced at global rating index t * stride
    stride: int
    first_ts: np.ndarray       # int64 [U]
    window: np.ndarray         # int64 [U]


def _plan(config: SyntheticConfig) -> _Plan:
    users, items, topics = config.num_users, config.num_items, config.num_topics
    if config.num_ratings < items:
        raise ValueError("a synthetic set needs at least as many ratings as items (every item is rated)")
    rng = np.random.default_rng([config.seed, _STREAM_PLAN])
    by_rank = rng.permutation(items)  # by_rank[r] is the item of popularity rank r
    topic_of_item = rng.permutation(np.arange(items) % topics)  # every topic gets >= items // topics items
    topic_by_rank = topic_of_item[by_rank]
    in_topics = by_rank[np.argsort(topic_by_rank, kind="stable")]  # grouped by topic, rank order within
    source_size = np.append(np.bincount(topic_of_item, minlength=topics), items)
    source_start = np.concatenate([[0], np.cumsum(source_size)[:-1]])

    counts = _rating_counts(rng, users, config.num_ratings, max(MIN_RATINGS, items // MAX_SHARE_OF_ITEMS))
    window = np.minimum(np.exp(rng.normal(np.log(MEDIAN_WINDOW_S), 1.5, users)), MAX_WINDOW_S).astype(np.int64)
    return _Plan(config=config, ranked=np.concatenate([in_topics, by_rank]),
                 source_start=source_start, source_size=source_size,
                 primary=rng.integers(topics, size=users), secondary=rng.integers(topics, size=users),
                 counts=counts, ends=np.cumsum(counts), cover=rng.permutation(items),
                 stride=config.num_ratings // items,
                 first_ts=FIRST_TIMESTAMP + rng.integers(FIRST_RATING_SPREAD_S, size=users),
                 window=window + 1)


def _rating_counts(rng: np.random.Generator, users: int, ratings: int, cap: int) -> np.ndarray:
    """Ratings per user: >= MIN_RATINGS, <= cap, log-normal above the minimum, summing to `ratings`.

    Largest-remainder apportionment of the ratings above the minimum in proportion to log-normal
    weights; users that would pass the cap are fixed at it and the rest re-apportioned.
    """
    if not MIN_RATINGS * users <= ratings <= cap * users:
        raise ValueError(f"{ratings} ratings cannot give {users} users between {MIN_RATINGS} and {cap} each")
    weights = rng.lognormal(0.0, COUNT_SIGMA, users)
    counts = np.full(users, MIN_RATINGS, dtype=np.int64)
    capped = np.zeros(users, dtype=bool)
    while True:
        free = ~capped
        extra = ratings - counts[capped].sum() - MIN_RATINGS * free.sum()
        share = extra * weights[free] / weights[free].sum()
        allotted = np.floor(share).astype(np.int64)
        leftover = int(extra - allotted.sum())
        allotted[np.argsort(allotted - share, kind="stable")[:leftover]] += 1
        counts[free] = MIN_RATINGS + allotted
        over = counts > cap
        if not over.any():
            return counts
        counts[over] = cap
        capped |= over


def _draw(plan: _Plan, rng: np.random.Generator, owners: np.ndarray) -> np.ndarray:
    """One item per entry of `owners` (global user ids) from that user's mixture."""
    topics = plan.config.num_topics
    pick = rng.random(owners.size)
    first, second = SOURCE_WEIGHTS[0], SOURCE_WEIGHTS[0] + SOURCE_WEIGHTS[1]
    source = np.where(pick < first, plan.primary[owners], np.where(pick < second, plan.secondary[owners], topics))
    size = plan.source_size[source]
    offset = ZIPF_OFFSET / size
    within = offset * (((1.0 + offset) / offset) ** rng.random(owners.size) - 1.0)  # inverse CDF, in [0, 1)
    rank = np.minimum((within * size).astype(np.int64), size - 1)
    return plan.ranked[plan.source_start[source] + rank]


def _chunk(plan: _Plan, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users int32, items int32, timestamps int64) of chunk `index`, sorted by user then item."""
    config = plan.config
    items = config.num_items
    lo = index * CHUNK_USERS
    hi = min(config.num_users, lo + CHUNK_USERS)
    rng = np.random.default_rng([config.seed, _STREAM_CHUNK, index])
    counts = plan.counts[lo:hi]
    # Forced cover ratings whose global index t * stride falls in this chunk's rating range.
    first_rating = plan.ends[lo - 1] if lo else 0
    t = np.arange(-(-first_rating // plan.stride), min(items, -(-plan.ends[hi - 1] // plan.stride)))
    forced_owner = np.searchsorted(plan.ends, t * plan.stride, side="right") - lo
    parts = [np.sort(forced_owner * items + plan.cover[t])]  # sorted, disjoint key arrays
    have = np.bincount(parts[0] // items, minlength=hi - lo)
    for round_number in range(_MAX_ROUNDS):
        need = counts - have
        if not need.any():
            break
        owners = np.repeat(np.arange(hi - lo), need)
        if round_number < _MIXTURE_ROUNDS:
            drawn = _draw(plan, rng, owners + lo)
        else:
            drawn = rng.integers(items, size=owners.size)
        fresh = np.sort(owners * items + drawn)
        fresh = fresh[np.append(True, fresh[1:] != fresh[:-1])]  # sorted unique, faster than np.unique
        for part in filter(len, parts):
            found = np.searchsorted(part, fresh)
            fresh = fresh[(found == part.size) | (part[np.minimum(found, part.size - 1)] != fresh)]
        parts.append(fresh)  # at most need[u] new items per user: each drew exactly need[u]
        have += np.bincount(fresh // items, minlength=hi - lo)
    else:
        raise RuntimeError("synthetic generator did not converge")
    keys = np.sort(np.concatenate(parts))
    users = (keys // items).astype(np.int64)
    timestamps = plan.first_ts[lo + users] + (rng.random(keys.size) * plan.window[lo + users]).astype(np.int64)
    return (users + lo).astype(np.int32), (keys % items).astype(np.int32), timestamps


def iter_chunks(config: SyntheticConfig) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The dataset chunk by chunk (users ascending): for streaming writers such as the CSV bench."""
    plan = _plan(config)
    for index in range(-(-config.num_users // CHUNK_USERS)):
        yield _chunk(plan, index)


def hash_ratings(digest: "hashlib._Hash", users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> None:
    """Feed ratings arrays to `digest` as little-endian int32, int32, int64 bytes (in that order)."""
    for array, dtype in ((users, "<i4"), (items, "<i4"), (timestamps, "<i8")):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())


def generate(config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """All ratings as (users int32, items int32, timestamps int64, sha256).

    The SHA-256 covers the little-endian bytes of each chunk's three arrays in order; it plays
    the role a rating file's checksum plays for downloaded data.
    """
    digest = hashlib.sha256()
    users, items, timestamps = [], [], []
    for chunk_users, chunk_items, chunk_ts in iter_chunks(config):
        hash_ratings(digest, chunk_users, chunk_items, chunk_ts)
        users.append(chunk_users)
        items.append(chunk_items)
        timestamps.append(chunk_ts)
    return np.concatenate(users), np.concatenate(items), np.concatenate(timestamps), digest.hexdigest()


def write_csv(config: SyntheticConfig, path: str | os.PathLike) -> int:
    """Write the dataset as an ml-20m style ratings.csv (1-based ids); returns the row count.

    Feeds the CSV benchmark of preparation (`data --bench-csv`) with a file of ml-20m's size and
    format. Ratings are half-stars derived from the ids: preparation ignores them. Lines are
    built with numpy's vectorised string ufuncs, about twice as fast as pandas' to_csv.
    """
    text = np.dtypes.StringDType()
    half_stars = np.array([f"{k / 2:.1f}" for k in range(1, 11)], dtype=text)
    rows = 0
    with open(path, "w", encoding="ascii", newline="") as handle:
        handle.write("userId,movieId,rating,timestamp\n")
        for users, items, timestamps in iter_chunks(config):
            lines = (users + RAW_ID_OFFSET).astype(text)
            for column in ((items + RAW_ID_OFFSET).astype(text), half_stars[(users + items) % 10], timestamps.astype(text)):
                lines = np.strings.add(np.strings.add(lines, ","), column)
            handle.write("\n".join(lines.tolist()))
            handle.write("\n")
            rows += lines.size
    return rows
