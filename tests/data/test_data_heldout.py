"""The held-out tie-break (harness.data.heldout): check values, neutrality, order independence, digest."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from harness.data.heldout import heldout_sha256, tiebreak_keys
from harness.data.prepare import from_ratings, load_dataset
from harness.data.rng import splitmix64_step
from harness.core.errors import UserError
from reference.constants import MIN_RATINGS

ML_LATEST_SMALL_HELDOUT_SHA256 = "7e3f0c9b1dd63b3f0805fce25638a1b37f3f5bdb719e90c620f63fa8400a0d9f"
_MASK = (1 << 64) - 1


def _splitmix64_step(x: int) -> int:
    """The standard splitmix64 step in plain Python integers: the oracle for the numpy one."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _key(user: int, item: int) -> int:
    return _splitmix64_step((user << 32) | item)


def test_check_values() -> None:
    assert int(splitmix64_step(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF
    assert _splitmix64_step(0) == 0xE220A8397B1DCDAF
    assert int(tiebreak_keys(np.array([1]), np.array([1]))[0]) == 0x204391A6FD59956F
    users = np.array([0, 1, 7, 2**32 - 1, 138_493])
    items = np.array([2**32 - 1, 1, 600, 0, 131_262])
    got = tiebreak_keys(users, items).tolist()
    assert got == [_key(u, i) for u, i in zip(users.tolist(), items.tolist())]


def test_keys_compare_unsigned() -> None:
    """A key with the top bit set is large, not negative: the pair below must lose the tie."""
    user, items = 1, range(1, 200)
    top_bit = [i for i in items if _key(user, i) >> 63]
    low = [i for i in items if not _key(user, i) >> 63]
    assert top_bit and low
    pair = [top_bit[0], low[0]]
    history = [(100_000 + k, k) for k in range(MIN_RATINGS)]
    rows = history + [(item, 10**9) for item in pair]
    data = from_ratings("t", np.full(len(rows), user), np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
    assert np.unique([r[0] for r in rows])[data.test_items].tolist() == [low[0]]


def _tied_ratings(seed: int, users: int = 3_000, catalogue: int = 1_000, tie: int = 6
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users with MIN_RATINGS earlier ratings and `tie` more at one latest second; popularity
    falls with item id (p ~ 1 / (id + 5)), as it roughly does in MovieLens."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(1, catalogue + 1) + 5.0)
    weights /= weights.sum()
    per_user = MIN_RATINGS + tie
    items = np.concatenate([rng.choice(np.arange(1, catalogue + 1), per_user, replace=False, p=weights)
                            for _ in range(users)])
    user_ids = np.repeat(np.arange(1, users + 1), per_user)
    stamps = np.tile(np.r_[np.arange(MIN_RATINGS), np.full(tie, 10**9)], users)
    return user_ids, items, stamps


def test_held_out_items_are_popularity_neutral() -> None:
    """Against the exact expectation of a random choice among each user's tied items, the new
    rule's mean popularity is within sampling noise; "largest item id" is far below it."""
    users, items, stamps = _tied_ratings(seed=5)
    data = from_ratings("tied", users, items, stamps)
    popularity = np.bincount(items)                                   # ratings per raw item, whole file
    raw_item = np.unique(items)
    chosen = popularity[raw_item[data.test_items]]                    # [users]
    tied = popularity[items[stamps == 10**9]].reshape(-1, 6)          # [users, 6]
    random_mean = tied.mean(axis=1)                                   # exact expectation per user
    noise = np.sqrt(tied.var(axis=1).mean() / len(random_mean))       # s.e. of the mean of one choice per user
    largest_id = popularity[items[stamps == 10**9].reshape(-1, 6).max(axis=1)]
    assert abs(chosen.mean() - random_mean.mean()) < 3 * noise
    assert random_mean.mean() - largest_id.mean() > 20 * noise


def test_held_out_set_ignores_row_order() -> None:
    users, items, stamps = _tied_ratings(seed=9, users=400)
    data = from_ratings("tied", users, items, stamps)
    order = np.random.default_rng(0).permutation(users.size)
    shuffled = from_ratings("tied", users[order], items[order], stamps[order])
    np.testing.assert_array_equal(shuffled.test_items, data.test_items)
    assert shuffled.heldout_sha256 == data.heldout_sha256


def test_digest_is_the_documented_text() -> None:
    users, items = np.array([10, 2, 33]), np.array([5, 4_000_000_000, 7])
    text = "2,4000000000\n10,5\n33,7\n"
    assert heldout_sha256(users, items) == hashlib.sha256(text.encode()).hexdigest()


def test_ids_beyond_32_bits_are_refused(tmp_path: Path) -> None:
    rows = [(1, 2**32 + k, k) for k in range(MIN_RATINGS)]
    with pytest.raises(UserError, match="held-out tie-break"):
        from_ratings("t", *(np.array(column) for column in zip(*rows)))
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n"
                                        + "".join(f"{u},{i},4.0,{t}\n" for u, i, t in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match=r"ratings.csv has item ids outside 0\.\.4294967295"):
            load_dataset("ml-latest-small", data_dir=folder, cache_dir=tmp_path / "cache")


def test_ml_latest_small_held_out_set(shared_dir: Path, tmp_path: Path) -> None:
    """The published digest, and the rule recomputed with pandas and plain-Python keys."""
    folder = shared_dir / "data" / "ml-latest-small"
    if not (folder / "ratings.csv").is_file():
        pytest.skip(f"{folder}/ratings.csv is absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset("ml-latest-small", data_dir=folder, cache_dir=tmp_path)
    assert data.heldout_sha256 == ML_LATEST_SMALL_HELDOUT_SHA256
    import pandas as pd

    raw = pd.read_csv(folder / "ratings.csv")
    latest = raw[raw.timestamp == raw.groupby("userId").timestamp.transform("max")].copy()
    assert (latest.groupby("userId").size() > 1).sum() == 94
    latest["key"] = [_key(u, i) for u, i in zip(latest.userId, latest.movieId)]
    want = latest.sort_values("key").groupby("userId").movieId.first().sort_index()
    assert np.array_equal(np.unique(raw.movieId)[data.test_items], want.to_numpy())
    text = "".join(f"{u},{i}\n" for u, i in want.items())
    assert hashlib.sha256(text.encode()).hexdigest() == ML_LATEST_SMALL_HELDOUT_SHA256
