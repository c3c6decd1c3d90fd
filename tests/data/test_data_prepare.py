"""Preparation: filter, remap, leave-one-out tie-break, duplicates, the cache, synthetic sets."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from harness.data import synthetic
from harness.data.prepare import PREPARATION_VERSION, PreparedData, from_ratings, load_dataset
from harness.core.errors import UserError
from reference.constants import MIN_RATINGS


def _ratings(per_user: dict[int, list[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """{user: [(item, timestamp), ...]} -> arrays in that order."""
    users, items, stamps = [], [], []
    for user, rows in per_user.items():
        for item, stamp in rows:
            users.append(user)
            items.append(item)
            stamps.append(stamp)
    return np.array(users), np.array(items), np.array(stamps)


def _history(first_item: int, count: int = MIN_RATINGS, start: int = 0) -> list[tuple[int, int]]:
    return [(first_item + k, start + k) for k in range(count)]


def test_leave_one_out_takes_the_latest_rating_and_breaks_ties_by_the_smallest_key() -> None:
    # Three ratings at the user's latest time. Keys splitmix64((user << 32) | item), by hand:
    # user 7: 500 -> 0xbf43..., 600 -> 0x82f5..., 700 -> 0xf398...; user 5: 500 -> 0x351e...,
    # 600 -> 0x18d4..., 700 -> 0x6edf...: item 600 has the smallest key for both users.
    tie = [(500, 10**9), (700, 10**9), (600, 10**9)]
    users, items, stamps = _ratings({
        7: _history(100) + tie,
        3: _history(100) + [(900, 5)],      # latest timestamp is the history's, item 119
        5: tie[::-1] + _history(200),       # same tie, other file order: same answer
    })
    data = from_ratings("t", users, items, stamps)
    # Dense ids follow the original ids: users 3, 5, 7 -> 0, 1, 2.
    original_item = np.unique(items)
    assert original_item[data.test_items].tolist() == [119, 600, 600]
    assert "tiebreak-splitmix64" in data.preparation_version == PREPARATION_VERSION
    for user in range(3):
        row = data.train_items[data.train_indptr[user]:data.train_indptr[user + 1]]
        assert np.all(np.diff(row) >= 0)
        assert data.test_items[user] not in row


def test_users_below_min_ratings_are_dropped_and_ids_remapped_densely() -> None:
    users, items, stamps = _ratings({
        40: _history(1000),
        10: _history(3000, MIN_RATINGS - 1),   # dropped, and with it items 3000..3018
        25: _history(2000),
    })
    data = from_ratings("t", users, items, stamps)
    assert (data.num_users, data.num_items, data.num_ratings) == (2, 2 * MIN_RATINGS, 2 * MIN_RATINGS)
    assert data.num_train == 2 * (MIN_RATINGS - 1)
    # user 25 (items 2000..) is dense user 0 and comes first; items 1000.. are dense 0..19.
    assert data.train_items[:MIN_RATINGS - 1].min() >= MIN_RATINGS
    assert data.train_users.tolist() == sorted(data.train_users.tolist())
    with pytest.raises(UserError, match="at least"):
        from_ratings("t", *_ratings({1: _history(0, MIN_RATINGS - 1)}))


def test_duplicate_ratings_are_kept() -> None:
    history = _history(0) + [(5, 100), (5, 101)]  # item 5 rated three times, latest at t=101
    data = from_ratings("t", *_ratings({1: history}))
    assert data.num_ratings == MIN_RATINGS + 2
    assert data.test_items.tolist() == [5]
    assert (data.train_items == 5).sum() == 2   # the other two copies stay in training


def test_ml_latest_small_counts(shared_dir: Path, tmp_path: Path) -> None:
    folder = shared_dir / "data" / "ml-latest-small"
    if not (folder / "ratings.csv").is_file():
        pytest.skip(f"{folder}/ratings.csv is absent")
    with pytest.warns(UserWarning, match="unverified"):
        data = load_dataset("ml-latest-small", data_dir=folder, cache_dir=tmp_path)
    assert (data.num_users, data.num_items, data.num_ratings, data.num_train) == (610, 9_724, 100_836, 100_226)
    assert data.verification == "unverified"
    assert data.train_indptr[-1] == data.num_train and data.train_users.size == data.num_train
    # The tie-break is recomputed independently in tests/test_data_heldout.py.
    # The parent folder works as a data dir too, and the second load comes from the cache.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = load_dataset("ml-latest-small", data_dir=folder.parent, cache_dir=tmp_path)
    assert again.cache_path == data.cache_path and again.raw_sha256 == data.raw_sha256
    np.testing.assert_array_equal(again.train_items, data.train_items)


def test_cache_entry_is_reused_and_a_damaged_one_rebuilt(tmp_path: Path) -> None:
    first = load_dataset("synthetic-small", cache_dir=tmp_path)
    path = Path(first.cache_path)
    assert path.is_file() and path.parent == tmp_path / "prepared"
    stamp = path.stat().st_mtime_ns
    second = load_dataset("synthetic-small", cache_dir=tmp_path)
    assert path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.test_items, second.test_items)
    path.write_bytes(path.read_bytes()[:100])      # truncated entry
    third = load_dataset("synthetic-small", cache_dir=tmp_path)
    np.testing.assert_array_equal(first.train_items, third.train_items)
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [path.name]  # no temp files left


def test_cache_dir_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NCF_CACHE_DIR", str(tmp_path / "env-cache"))
    data = load_dataset("synthetic-small")
    assert Path(data.cache_path).parent == tmp_path / "env-cache" / "prepared"


def test_synthetic_small_is_deterministic_and_well_formed(tmp_path: Path) -> None:
    data = load_dataset("synthetic-small", cache_dir=tmp_path)
    config = synthetic.parse_name("synthetic-small")
    assert (data.num_users, data.num_items, data.num_ratings) == (
        config.num_users, config.num_items, config.num_ratings)
    assert data.verification == "synthetic" and data.num_train == data.num_ratings - data.num_users
    assert np.diff(data.train_indptr).min() >= MIN_RATINGS - 1
    users, items, stamps, sha = synthetic.generate(config)
    assert sha == data.raw_sha256
    assert synthetic.generate(config)[3] == sha                               # same seed, same data
    other = synthetic.generate(synthetic.parse_name("synthetic-small", seed=1))
    assert other[3] != sha
    keys = users.astype(np.int64) * config.num_items + items
    assert np.unique(keys).size == keys.size                                  # nobody rates twice
    popularity = np.sort(np.bincount(items))[::-1]
    assert popularity[: config.num_items // 100].sum() > 5 * popularity[-(config.num_items // 100):].sum()


def test_synthetic_names_scale_and_reject_unknown_ones() -> None:
    base = synthetic.parse_name("synthetic-ml20m")
    assert (base.num_users, base.num_items, base.num_ratings) == (138_493, 26_744, 20_000_263)
    scaled = synthetic.parse_name("synthetic-ml20mx4x2")
    assert (scaled.num_users, scaled.num_items, scaled.num_ratings) == (4 * 138_493, 2 * 26_744, 4 * 20_000_263)
    for bad in ("synthetic-huge", "synthetic-ml20mx0x2", "synthetic-ml20mx4", "synthetic-"):
        with pytest.raises(UserError):
            synthetic.parse_name(bad)


def test_scaled_synthetic_set_has_the_scaled_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small base scaled x2 x3 goes through the same parser and generator."""
    monkeypatch.setitem(synthetic._BASES, "tiny", (300, 400, 9_000, 8))
    data: PreparedData = load_dataset("synthetic-tinyx2x3", cache_dir=tmp_path)
    assert (data.num_users, data.num_items, data.num_ratings) == (600, 1_200, 18_000)


def test_csv_path_prepares_like_the_in_memory_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A synthetic set written as ml-20m style CSV parses back to the same prepared arrays."""
    monkeypatch.setitem(synthetic._BASES, "tiny", (300, 400, 9_000, 8))
    config = synthetic.parse_name("synthetic-tiny")
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    assert synthetic.write_csv(config, folder / "ratings.csv") == config.num_ratings
    with pytest.warns(UserWarning):
        from_csv = load_dataset("ml-latest-small", data_dir=folder, cache_dir=tmp_path / "cache")
    direct = load_dataset("synthetic-tiny", cache_dir=tmp_path / "cache")
    for field in ("train_items", "train_indptr", "test_items"):
        np.testing.assert_array_equal(getattr(from_csv, field), getattr(direct, field))
    assert from_csv.heldout_sha256 == direct.heldout_sha256
