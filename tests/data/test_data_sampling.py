"""Negative sampling and the epoch shuffle: exclusion, statistics, determinism, exact sharding."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from harness.data import sampling
from harness.data.prepare import PreparedData, from_ratings, load_dataset
from reference.constants import NUM_EVAL_NEGATIVES, NUM_NEG


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    return load_dataset("synthetic-small", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def latest_small(shared_dir, tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    folder = shared_dir / "data" / "ml-latest-small"
    if not (folder / "ratings.csv").is_file():
        pytest.skip(f"{folder}/ratings.csv is absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset("ml-latest-small", data_dir=folder, cache_dir=tmp_path_factory.mktemp("cache"))


def _train_keys(data: PreparedData) -> np.ndarray:
    return np.unique(data.train_users.astype(np.int64) * data.num_items + data.train_items)


def _is_positive(data: PreparedData, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Membership by np.isin: independent of the sampler's bitmap and binary search."""
    return np.isin(users.astype(np.int64) * data.num_items + items, _train_keys(data))


def test_eval_negatives_are_never_training_positives(small: PreparedData) -> None:
    negatives = sampling.eval_negatives(small, seed=0)
    assert negatives.shape == (small.num_users, NUM_EVAL_NEGATIVES) and negatives.dtype == np.int32
    users = np.repeat(np.arange(small.num_users), NUM_EVAL_NEGATIVES)
    assert not _is_positive(small, users, negatives.reshape(-1)).any()
    assert negatives.min() >= 0 and negatives.max() < small.num_items


def test_training_negatives_and_epoch_never_use_training_positives(small: PreparedData) -> None:
    negatives = sampling.training_negatives(small, seed=3, epoch=2, start=0, stop=small.num_train)
    assert negatives.shape == (small.num_train, NUM_NEG)
    assert not _is_positive(small, np.repeat(small.train_users, NUM_NEG), negatives.reshape(-1)).any()
    users, items, labels = sampling.epoch_examples(small, seed=3, epoch=2)
    assert users.size == small.num_train * (1 + NUM_NEG)
    positive = labels == 1
    assert positive.sum() == small.num_train
    assert not _is_positive(small, users[~positive], items[~positive]).any()
    assert _is_positive(small, users[positive], items[positive]).all()
    # Every training positive appears exactly once.
    got = np.sort(users[positive].astype(np.int64) * small.num_items + items[positive])
    want = np.sort(small.train_users.astype(np.int64) * small.num_items + small.train_items)
    np.testing.assert_array_equal(got, want)


def test_both_sampler_backends_agree(small: PreparedData) -> None:
    """The bitmap and the sorted-key search are the same membership test."""
    bitmap = sampling.PositiveSet(small)
    keys = sampling.PositiveSet(small, bitmap_max_bytes=0)
    assert bitmap.bitmap is not None and keys.keys is not None
    np.testing.assert_array_equal(sampling.eval_negatives(small, 5, positives=bitmap),
                                  sampling.eval_negatives(small, 5, positives=keys))


def _expected_duplicates(data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """Per user: expected duplicates in the 1,000-candidate row, and P(test item drawn).

    A row is the true item t plus 999 uniform draws from the m non-positives S of the user.
    E[distinct] = 1 + (m - [t in S]) * (1 - (1 - 1/m)**999); duplicates = 1000 - distinct.
    """
    counts = np.diff(np.searchsorted(_train_keys(data) // data.num_items, np.arange(data.num_users + 1)))
    pool = data.num_items - counts
    test_in_pool = ~_is_positive(data, np.arange(data.num_users), data.test_items)
    hit = 1.0 - (1.0 - 1.0 / pool) ** NUM_EVAL_NEGATIVES
    distinct = 1.0 + (pool - test_in_pool) * hit
    return (NUM_EVAL_NEGATIVES + 1) - distinct, np.where(test_in_pool, hit, 0.0)


@pytest.mark.parametrize("dataset", ["small", "latest_small"])
def test_duplicate_rate_matches_sampling_with_replacement(dataset: str, request: pytest.FixtureRequest) -> None:
    data: PreparedData = request.getfixturevalue(dataset)
    negatives = sampling.eval_negatives(data, seed=0)
    rows = np.sort(np.concatenate([negatives, data.test_items[:, np.newaxis]], axis=1), axis=1)
    duplicates = (rows[:, 1:] == rows[:, :-1]).sum(axis=1)
    drawn = (negatives == data.test_items[:, np.newaxis]).any(axis=1)
    expected_duplicates, expected_drawn = _expected_duplicates(data)
    # Rows are independent: compare means within 5 standard errors of the observed spread.
    spread = np.std(duplicates - expected_duplicates) / np.sqrt(data.num_users)
    assert abs(duplicates.mean() - expected_duplicates.mean()) < 5 * spread
    drawn_error = np.sqrt((expected_drawn * (1 - expected_drawn)).sum()) / data.num_users
    assert abs(drawn.mean() - expected_drawn.mean()) < 5 * drawn_error + 1e-9


def test_negatives_are_uniform_over_non_positives() -> None:
    """A user holding most of a 50-item catalogue: its many draws spread evenly over the rest."""
    rng = np.random.default_rng(0)
    users = np.repeat([0, 1], [40, 20])
    items = np.concatenate([np.arange(40), rng.choice(50, 20, replace=False)])
    data = from_ratings("uniform", users, items, np.arange(users.size))
    draws = sampling.eval_negatives(data, seed=1, num_neg=20_000)[0]
    allowed = np.setdiff1d(np.arange(data.num_items), data.train_items[data.train_indptr[0]:data.train_indptr[1]])
    assert set(np.unique(draws)) == set(allowed)
    counts = np.bincount(draws, minlength=data.num_items)[allowed]
    expected = draws.size / allowed.size
    chi2 = ((counts - expected) ** 2 / expected).sum()
    # 10 allowed items -> 9 degrees of freedom; 27.9 is the 0.999 quantile.
    assert chi2 < 27.9


def test_fixed_seeds_reproduce_and_seeds_and_epochs_differ(small: PreparedData) -> None:
    np.testing.assert_array_equal(sampling.eval_negatives(small, 7), sampling.eval_negatives(small, 7))
    assert (sampling.eval_negatives(small, 7) != sampling.eval_negatives(small, 8)).mean() > 0.9
    first = sampling.epoch_examples(small, seed=7, epoch=1)
    again = sampling.epoch_examples(small, seed=7, epoch=1, workers=3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    later = sampling.epoch_examples(small, seed=7, epoch=2)
    assert (first[0] != later[0]).mean() > 0.9  # reshuffled
    negatives_1 = sampling.training_negatives(small, 7, 1, 0, small.num_train)
    negatives_2 = sampling.training_negatives(small, 7, 2, 0, small.num_train)
    assert (negatives_1 != negatives_2).mean() > 0.9  # fresh negatives every epoch


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7])
def test_shards_concatenate_to_the_epoch(small: PreparedData, num_shards: int) -> None:
    full = sampling.epoch_examples(small, seed=11, epoch=4)
    size = full[0].size
    for shard in range(num_shards):
        lo, hi = shard * size // num_shards, (shard + 1) * size // num_shards
        part = sampling.epoch_examples(small, seed=11, epoch=4, shard=shard, num_shards=num_shards)
        for whole, piece in zip(full, part):
            np.testing.assert_array_equal(whole[lo:hi], piece)


def test_an_epoch_written_over_an_earlier_one_is_the_same_epoch(small: PreparedData) -> None:
    """`out` recycles an earlier epoch's memory; nothing of that epoch may survive in the new one."""
    fresh = sampling.epoch_examples(small, seed=5, epoch=3, shard=1, num_shards=2, block=500)
    out = sampling.epoch_examples(small, seed=5, epoch=2, shard=1, num_shards=2, block=500)
    got = sampling.epoch_examples(small, seed=5, epoch=3, shard=1, num_shards=2, block=500, out=out)
    assert all(a is b for a, b in zip(got, out))
    for a, b in zip(got, fresh):
        np.testing.assert_array_equal(a, b)


def test_out_arrays_of_another_shape_are_refused(small: PreparedData) -> None:
    users, items, labels = sampling.epoch_examples(small, seed=5, epoch=1)
    with pytest.raises(ValueError, match="out arrays must be"):
        sampling.epoch_examples(small, seed=5, epoch=2, shard=0, num_shards=2, out=(users, items, labels))
    with pytest.raises(ValueError, match="out arrays must be"):
        sampling.epoch_examples(small, seed=5, epoch=2, out=(users, items, labels.astype(np.float64)))


def test_the_epoch_is_each_position_drawn_one_at_a_time(small: PreparedData) -> None:
    """The vectorised epoch equals a plain per-position rendering of the module docstring's rules."""
    users, items, labels = sampling.epoch_examples(small, seed=9, epoch=4)
    size, total = users.size, small.num_train
    permutation = sampling.EpochPermutation(size, sampling.stream_key(9, sampling._SHUFFLE, 4))
    key = int(sampling.stream_key(9, sampling._TRAIN, 4))
    positive = {(int(u), int(i)) for u, i in zip(small.train_users, small.train_items)}
    mask = (1 << 64) - 1

    def mix(x: int) -> int:
        x ^= x >> 30
        x = (x * 0xBF58476D1CE4E5B9) & mask
        x ^= x >> 27
        x = (x * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    rng = np.random.default_rng(0)
    for position in rng.choice(size, 3000, replace=False):
        example = int(permutation(np.array([position]))[0])
        which, p = divmod(example, total)
        user = int(small.train_users[p])
        assert users[position] == user and labels[position] == (which == 0)
        if which == 0:
            assert items[position] == small.train_items[p]
            continue
        attempt = 0
        while True:
            h = mix((example * 0x9E3779B97F4A7C15 + key + attempt * 0xD1B54A32D192ED03) & mask)
            item = ((h >> 32) * small.num_items) >> 32
            if (user, item) not in positive:
                break
            attempt += 1
        assert items[position] == item


def test_training_negatives_are_the_epochs_negatives(small: PreparedData) -> None:
    """training_negatives(start, stop) regenerates exactly what the shuffled epoch holds."""
    users, items, labels = sampling.epoch_examples(small, seed=2, epoch=5)
    examples = sampling.EpochPermutation(users.size, sampling.stream_key(2, sampling._SHUFFLE, 5))(
        np.arange(users.size, dtype=np.int64))
    negatives = sampling.training_negatives(small, seed=2, epoch=5, start=0, stop=small.num_train)
    which, positive = np.divmod(examples, small.num_train)
    is_negative = which > 0
    np.testing.assert_array_equal(items[is_negative], negatives[positive[is_negative], which[is_negative] - 1])
    part = sampling.training_negatives(small, seed=2, epoch=5, start=123, stop=4567)
    np.testing.assert_array_equal(part, negatives[123:4567])


def test_eval_negatives_depend_only_on_seed_and_user(small: PreparedData) -> None:
    """Changing other users' positives leaves a user's row alone (exact user sharding)."""
    keep = small.train_users >= 10  # drop users 0..9's training positives entirely ...
    users = np.concatenate([small.train_users[keep], np.arange(small.num_users)])
    items = np.concatenate([small.train_items[keep], small.test_items])
    timestamps = np.concatenate([np.zeros(keep.sum(), np.int64), np.ones(small.num_users, np.int64)])
    # ... but give them 20 other positives so they survive the filter with the same test item.
    extra_users = np.repeat(np.arange(10), 20)
    extra_items = np.tile(np.arange(20), 10)
    shifted = from_ratings("other", np.concatenate([users, extra_users]), np.concatenate([items, extra_items]),
                           np.concatenate([timestamps, np.zeros(200, np.int64)]))
    assert shifted.num_users == small.num_users and shifted.num_items == small.num_items
    np.testing.assert_array_equal(shifted.test_items, small.test_items)
    np.testing.assert_array_equal(sampling.eval_negatives(shifted, 4)[10:], sampling.eval_negatives(small, 4)[10:])


@pytest.mark.parametrize("size", [1, 2, 3, 10, 99, 1000, 65_537])
def test_epoch_permutation_is_a_bijection(size: int) -> None:
    permutation = sampling.EpochPermutation(size, sampling.stream_key(1, 2, 3))
    pointwise = permutation(np.arange(size, dtype=np.int64))
    np.testing.assert_array_equal(np.sort(pointwise), np.arange(size))
    chunked = np.concatenate([examples for _, _, examples in permutation.chunks(0, size, target=64)])
    np.testing.assert_array_equal(chunked, pointwise)


def test_epoch_permutation_mixes_neighbours() -> None:
    """Consecutive positions land far apart: the shuffle is not a near-identity."""
    size = 1_000_000
    examples = sampling.EpochPermutation(size, sampling.stream_key(0, 1, 1))(np.arange(size, dtype=np.int64))
    gaps = np.abs(np.diff(examples))
    assert np.median(gaps) > size / 10  # a uniform shuffle gives a median gap of ~0.29 * size
    assert abs(np.corrcoef(np.arange(size), examples)[0, 1]) < 0.01


def test_block_shards_interleave_into_the_global_steps_of_one_host():
    """Host h's k-th block is its slice of global step k: hosts together see one host's batches."""
    from harness.data.prepare import from_ratings
    from harness.data.sampling import epoch_examples

    rng = np.random.default_rng(5)
    users = np.repeat(np.arange(60), 25)
    data = from_ratings("block-test", users, rng.integers(0, 400, users.size), np.arange(users.size))
    whole = epoch_examples(data, 3, 2)
    global_batch, hosts = 96, 2
    parts = [epoch_examples(data, 3, 2, shard=h, num_shards=hosts, block=global_batch // hosts)
             for h in range(hosts)]
    block = global_batch // hosts
    for column in range(3):
        rebuilt = []
        for k in range(-(-len(whole[0]) // block)):
            host, index = k % hosts, k // hosts
            rebuilt.append(parts[host][column][index * block:(index + 1) * block])
        np.testing.assert_array_equal(np.concatenate(rebuilt), whole[column])


def _both_kernels(data: PreparedData, **kwargs) -> None:
    compiled = sampling.epoch_examples(data, kernel="compiled", **kwargs)
    plain = sampling.epoch_examples(data, kernel="numpy", **kwargs)
    for a, b in zip(compiled, plain):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("num_shards, block, num_neg", [
    (1, None, NUM_NEG), (3, None, NUM_NEG), (2, 500, NUM_NEG), (4, 20_000, NUM_NEG), (1, None, 1), (2, None, 9),
])
def test_the_compiled_epoch_kernel_renders_the_numpy_epoch(small: PreparedData, num_shards: int,
                                                           block: int | None, num_neg: int) -> None:
    """Same arrays on shards that start mid-row, blocks, several chunks and other negative counts.

    synthetic-small's epoch of 5 * 39,000 positions is not a * b, so cycle walking happens too.
    """
    permutation = sampling.EpochPermutation(small.num_train * (1 + NUM_NEG), np.uint64(0))
    assert permutation.a * permutation.b > permutation.size
    for shard in range(num_shards):
        _both_kernels(small, seed=7, epoch=3, num_neg=num_neg, shard=shard, num_shards=num_shards, block=block)


def test_the_compiled_epoch_kernel_rejects_as_numpy_does() -> None:
    """Users holding 40 and 49 of 50 items: most first draws are positives and are redrawn."""
    users = np.repeat([0, 1, 2], [41, 50, 3])
    items = np.concatenate([np.arange(41), np.arange(50), [7, 8, 9]])
    data = from_ratings("crowded", users, items, np.arange(users.size))
    for epoch in range(3):
        _both_kernels(data, seed=4, epoch=epoch)
    users_, items_, labels = sampling.epoch_examples(data, seed=4, epoch=1, kernel="compiled")
    negative = labels == 0
    assert not _is_positive(data, users_[negative], items_[negative]).any()


def test_the_epoch_kernel_is_chosen_and_checked(small: PreparedData) -> None:
    bitmap = sampling.PositiveSet(small)
    keys = sampling.PositiveSet(small, bitmap_max_bytes=0)
    assert sampling.epoch_kernel(bitmap) == "compiled" and sampling.epoch_kernel(keys) == "numpy"
    assert sampling.epoch_kernel(bitmap, "numpy") == "numpy"
    with pytest.raises(ValueError, match="needs numba and a positives bitmap"):
        sampling.epoch_kernel(keys, "compiled")
    with pytest.raises(ValueError, match="must be one of compiled, numpy"):
        sampling.epoch_kernel(bitmap, "fast")
    np.testing.assert_array_equal(sampling.epoch_examples(small, 2, 1, positives=keys)[1],
                                  sampling.epoch_examples(small, 2, 1, positives=bitmap)[1])


@pytest.mark.parametrize("num_shards, block", [(1, None), (3, None), (2, 500)])
def test_epoch_length_and_written_arrays_fit_every_shard(small: PreparedData, num_shards: int,
                                                         block: int | None) -> None:
    """A run's first epoch goes into arrays allocated during init; they must fit and come out the same."""
    for shard in range(num_shards):
        fresh = sampling.epoch_examples(small, 3, 1, shard=shard, num_shards=num_shards, block=block)
        length = sampling.epoch_length(small, NUM_NEG, shard, num_shards, block)
        assert length == fresh[0].size
        memory = sampling.written_epoch_arrays(length)
        assert all(not a.any() for a in memory)
        got = sampling.epoch_examples(small, 3, 1, shard=shard, num_shards=num_shards, block=block, out=memory)
        assert all(a is b for a, b in zip(got, memory))
        for a, b in zip(got, fresh):
            np.testing.assert_array_equal(a, b)
