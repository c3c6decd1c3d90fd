"""From ratings to the benchmark's arrays: filter, remap, leave-one-out; cached on disk.

Preparation (docs/reference-facts.md §1), vectorised numpy throughout:
1. Users with fewer than `MIN_RATINGS` ratings are dropped (none are in the GroupLens sets).
2. User and item ids are remapped to dense 0-based ints in the order of the original ids.
3. Leave-one-out: each user's most recent rating is the test positive, all others are training
   positives. Tie-break: among the ratings at the user's latest timestamp, the one with the
   smallest splitmix64 key of (raw user id, raw item id) is held out (harness.data.heldout says
   why: the old "largest item id" rule held out unpopular items). The rule depends only on the
   set of ratings, not on the row order of the file, so a re-sorted copy of a dataset prepares
   identically. It is named in `PREPARATION_VERSION`, which is recorded in every run's log:
   changing it changes the eval set. `heldout_sha256` names the held-out set in raw ids.
4. Duplicate (user, item) rows are kept, as the reference keeps them: every rating row is a
   positive. If a user rated the held-out item more than once, the other copies stay in training.

The result is cached as an uncompressed .npz under `<cache>/prepared/`, keyed by the SHA-256 of
the rating file and `PREPARATION_VERSION` (synthetic sets: by generator version, name and seed),
and written atomically, so an interrupted run never leaves a half-written entry and a damaged
entry is rebuilt.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.core.atomic import atomic_write_bytes
from harness.data import synthetic
from harness.data.download import CACHE_FLAG, Progress, cache_root, check_md5, fetch_zip
from harness.data.heldout import TIEBREAK_RULE, check_raw_ids, choose_among_ties, heldout_sha256, tiebreak_keys
from harness.data.movielens import RatingFile, read_ratings, sha256_of
from harness.data.registry import DatasetSpec, get_spec
from harness.core.errors import UserError
from harness.core.writable import require_writable_dir, writing_to
from reference.constants import MIN_RATINGS

PREPARATION_VERSION = f"loo-v2-min{MIN_RATINGS}-tiebreak-{TIEBREAK_RULE}"
VERIFIED, UNVERIFIED, SYNTHETIC = "verified", "unverified", "synthetic"
_CACHE_FORMAT = 2  # 2: entries hold heldout_sha256
# Use a presence table instead of sorting to remap ids when the id range is at most this many
# times the number of ratings (MovieLens ids are small ints, so in practice always).
_DENSE_TABLE_FACTOR = 4


class UnverifiedDataWarning(UserWarning):
    """Data that was accepted without a published checksum (e.g. an extracted folder)."""


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A prepared dataset: training positives in CSR form plus each user's held-out item."""

    name: str                 # dataset name, e.g. "ml-20m", "synthetic-small"
    num_users: int
    num_items: int
    num_ratings: int          # after the min-ratings filter
    train_users: np.ndarray   # int32 [N], sorted ascending (CSR order)
    train_items: np.ndarray   # int32 [N], sorted ascending within each user
    train_indptr: np.ndarray  # int64 [num_users+1], CSR row pointers into train_items
    test_items: np.ndarray    # int32 [num_users]; user u's held-out item
    verification: str         # "verified" | "unverified" | "synthetic"
    raw_sha256: str           # SHA-256 of the rating file (synthetic: of the generated arrays)
    preparation_version: str  # covers the leave-one-out tie-break
    heldout_sha256: str       # SHA-256 of the held-out (user, item) pairs in raw ids (harness.data.heldout)
    source: str               # human-readable: URL, path or generator parameters
    cache_path: str = ""      # the prepared-data cache file this came from or went to

    @property
    def num_train(self) -> int:
        """Number of training positives (ratings minus one held-out item per user)."""
        return int(self.train_items.size)


@dataclass(frozen=True)
class _Arrays:
    """The content of a cache entry (everything in PreparedData that does not depend on how the
    raw data was obtained)."""

    num_users: int
    num_items: int
    num_ratings: int
    train_items: np.ndarray
    train_indptr: np.ndarray
    test_items: np.ndarray
    raw_sha256: str
    heldout_sha256: str


def dense_ids(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """(0-based ids in the order of the original ids, number of distinct ids)."""
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo <= _DENSE_TABLE_FACTOR * ids.size:
        shifted = ids - lo
        present = np.zeros(hi - lo + 1, dtype=bool)
        present[shifted] = True
        rank = np.cumsum(present, dtype=np.int64) - 1
        return rank[shifted], int(rank[-1] + 1)
    distinct, inverse = np.unique(ids, return_inverse=True)
    return inverse.reshape(-1), int(distinct.size)


def prepare_ratings(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, raw_sha256: str) -> _Arrays:
    """Min-ratings filter, dense remap and leave-one-out (see the module docstring).

    `users` and `items` are the raw ids of the rating file (synthetic sets: generator id + 1):
    the tie-break keys them, so they must be the ids a user of the file would see.
    """
    check_raw_ids(users, items, "the ratings")
    dense_users, num_users = dense_ids(users)
    counts = np.bincount(dense_users, minlength=num_users)
    if (counts < MIN_RATINGS).any():
        keep = (counts >= MIN_RATINGS)[dense_users]
        if not keep.any():
            raise UserError(f"No user has at least {MIN_RATINGS} ratings.")
        users, items, timestamps = users[keep], items[keep], timestamps[keep]
        dense_users, num_users = dense_ids(users)
        counts = np.bincount(dense_users, minlength=num_users)
    dense_items, num_items = dense_ids(items)
    # One sort by (user, item) gives the CSR order.
    order = np.argsort(dense_users * np.int64(num_items) + dense_items)
    sorted_items = dense_items[order].astype(np.int32)
    sorted_ts = np.asarray(timestamps)[order]
    del dense_items, dense_users
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    latest = np.maximum.reduceat(sorted_ts, indptr[:-1])                     # [users]
    candidates = np.flatnonzero(sorted_ts == np.repeat(latest, counts))      # [c] rows at the latest time
    owners = np.searchsorted(indptr, candidates, side="right") - 1           # [c] their dense users
    source_rows = order[candidates]                                          # [c] rows in the input
    held_out = choose_among_ties(candidates, owners, tiebreak_keys(users[source_rows], items[source_rows]))
    test_items = sorted_items[held_out]
    raw_user_of = users[order[indptr[:-1]]]                                  # [users] raw id per dense user
    digest = heldout_sha256(raw_user_of, items[order[held_out]])
    keep = np.ones(sorted_items.size, dtype=bool)
    keep[held_out] = False
    return _Arrays(num_users=num_users, num_items=num_items, num_ratings=int(sorted_items.size),
                   train_items=sorted_items[keep], train_indptr=indptr - np.arange(num_users + 1),
                   test_items=test_items, raw_sha256=raw_sha256, heldout_sha256=digest)


def _save(path: Path, arrays: _Arrays) -> None:
    meta = {"cache_format": _CACHE_FORMAT, "preparation_version": PREPARATION_VERSION,
            "raw_sha256": arrays.raw_sha256, "num_users": arrays.num_users,
            "num_items": arrays.num_items, "num_ratings": arrays.num_ratings,
            "heldout_sha256": arrays.heldout_sha256}
    buffer = io.BytesIO()
    np.savez(buffer, train_items=arrays.train_items, train_indptr=arrays.train_indptr,
             test_items=arrays.test_items, meta=np.array(json.dumps(meta)))
    atomic_write_bytes(path, buffer.getbuffer())


def _load(path: Path, raw_sha256: str | None) -> _Arrays | None:
    """The cache entry at `path`, or None when absent, damaged or made by other code/data."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as entry:
            meta = json.loads(str(entry["meta"]))
            arrays = _Arrays(num_users=int(meta["num_users"]), num_items=int(meta["num_items"]),
                             num_ratings=int(meta["num_ratings"]), train_items=entry["train_items"],
                             train_indptr=entry["train_indptr"], test_items=entry["test_items"],
                             raw_sha256=str(meta["raw_sha256"]), heldout_sha256=str(meta["heldout_sha256"]))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    fits = (meta.get("cache_format") == _CACHE_FORMAT
            and meta.get("preparation_version") == PREPARATION_VERSION
            and (raw_sha256 is None or arrays.raw_sha256 == raw_sha256)
            and arrays.train_indptr.shape == (arrays.num_users + 1,)
            and arrays.test_items.shape == (arrays.num_users,)
            and arrays.train_items.shape == (int(arrays.train_indptr[-1]),))
    return arrays if fits else None


def _locate(spec: DatasetSpec, data_dir: str | os.PathLike | None, cache_dir: Path, mirror: str | None,
            progress: Progress | None) -> tuple[RatingFile, str]:
    """The rating file to read and its verification status (see harness.data.registry)."""
    zip_status = VERIFIED if spec.published else UNVERIFIED
    if data_dir is None:
        return RatingFile(fetch_zip(spec, cache_dir, mirror, progress), spec.member, spec.format), zip_status
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"Data directory {folder} does not exist.")
    archive = folder / f"{spec.name}.zip"
    if archive.is_file():
        check_md5(archive, spec)
        return RatingFile(archive, spec.member, spec.format), zip_status
    # An extracted copy: DIR/<name>/<file>, or DIR itself when it is the <name> folder.
    candidates = [folder / spec.name / spec.rating_file_name]
    if folder.name == spec.name:
        candidates.append(folder / spec.rating_file_name)
    for candidate in candidates:
        if candidate.is_file():
            warnings.warn(f"{candidate} is an extracted copy, accepted without checksum: the data "
                          f"is unverified.", UnverifiedDataWarning, stacklevel=3)
            return RatingFile(candidate, None, spec.format), UNVERIFIED
    raise UserError(f"{folder} holds neither {spec.name}.zip nor an extracted "
                    f"{spec.name}/{spec.rating_file_name}.")


def _from_cache_or(path: Path, raw_sha256: str | None, build: Callable[[], _Arrays],
                   progress: Progress | None) -> _Arrays:
    """The cache entry at `path`, else `build()` saved there; a cache that cannot take the entry
    is found before building (a minute at ml-20m scale), not after."""
    arrays = _load(path, raw_sha256)
    if arrays is None:
        require_writable_dir(path.parent, CACHE_FLAG)
        if progress:
            progress(f"preparing {path.name}")
        arrays = build()
        with writing_to(path.parent, CACHE_FLAG):
            _save(path, arrays)
    return arrays


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 mirror: str | None = None, progress: Progress | None = None) -> PreparedData:
    """Fetch or generate, then prepare (or load from the cache) dataset `name`.

    `progress`, if given, receives one-line status messages (downloads, cache misses).
    Raises UserError for anything the user can fix: unknown name, bad checksum, damaged zip,
    HTTP failure, malformed rows, missing data directory.
    """
    root = cache_root(cache_dir)
    if synthetic.is_synthetic(name):
        config = synthetic.parse_name(name)
        path = root / "prepared" / f"{name}-seed{config.seed}-{synthetic.SYNTHETIC_VERSION}-{PREPARATION_VERSION}.npz"
        arrays = _from_cache_or(path, None, lambda: _prepare_generated(config), progress)
        return _prepared(name, arrays, SYNTHETIC, config.describe(), path)
    spec = get_spec(name)
    rating_file, verification = _locate(spec, data_dir, root, mirror, progress)
    return prepare_rating_file(name, rating_file, verification, root, progress)


def _prepare_generated(config: synthetic.SyntheticConfig) -> _Arrays:
    """Prepare a synthetic set under the raw ids its CSV would carry, so both paths agree."""
    users, items, timestamps, raw_sha256 = synthetic.generate(config)
    return prepare_ratings(users + synthetic.RAW_ID_OFFSET, items + synthetic.RAW_ID_OFFSET, timestamps, raw_sha256)


def prepare_rating_file(name: str, rating_file: RatingFile, verification: str, root: Path,
                        progress: Progress | None = None) -> PreparedData:
    """Prepare one rating file through the cache under `root` (the path `data --bench-csv` times)."""
    raw_sha256 = sha256_of(rating_file)
    path = root / "prepared" / f"{name}-{raw_sha256[:16]}-{PREPARATION_VERSION}.npz"
    arrays = _from_cache_or(path, raw_sha256, lambda: prepare_ratings(*read_ratings(rating_file), raw_sha256),
                            progress)
    return _prepared(name, arrays, verification, rating_file.describe(), path)


def from_ratings(name: str, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, *,
                 verification: str = SYNTHETIC, source: str = "in-memory ratings") -> PreparedData:
    """Prepare ratings held in memory, without the cache (tests and tools build small sets so).

    `raw_sha256` hashes the arrays as `harness.data.synthetic.hash_ratings` does.
    """
    digest = hashlib.sha256()
    synthetic.hash_ratings(digest, users, items, timestamps)
    arrays = prepare_ratings(np.asarray(users), np.asarray(items), np.asarray(timestamps), digest.hexdigest())
    return _prepared(name, arrays, verification, source, None)


def _prepared(name: str, arrays: _Arrays, verification: str, source: str, path: Path | None) -> PreparedData:
    counts = np.diff(arrays.train_indptr)
    return PreparedData(
        name=name, num_users=arrays.num_users, num_items=arrays.num_items, num_ratings=arrays.num_ratings,
        train_users=np.repeat(np.arange(arrays.num_users, dtype=np.int32), counts),
        train_items=arrays.train_items, train_indptr=arrays.train_indptr, test_items=arrays.test_items,
        verification=verification, raw_sha256=arrays.raw_sha256, preparation_version=PREPARATION_VERSION,
        heldout_sha256=arrays.heldout_sha256,
        source=source, cache_path=str(path) if path else "")
