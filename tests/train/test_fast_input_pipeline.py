"""The training input pipeline slices batches in tf.data and pads only the tail batch.

Why: the pipeline no longer builds padded epoch-sized arrays on the host (a padded `valid`
column alone is 400 MB at ml-20m); these tests pin that the batches it yields are still exactly
the epoch in order, with a zero-weight tail, and that an empty shard (the runner's all-padding
warm-up) yields one all-padding batch.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from harness.train.input_pipeline import eval_dataset, order_by_user, steps_for, train_dataset


def collect(users, items, labels, steps, batch, user_order=False):
    dataset = train_dataset(tf.distribute.get_strategy(), users, items, labels, steps, batch, 1, user_order=user_order)
    return [tuple(t.numpy() for t in element) for element in dataset]


def random_epoch(seed: int, n: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, labels) of n random examples over 50 users and 70 items."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 50, n).astype(np.int32), rng.integers(0, 70, n).astype(np.int32),
            (rng.random(n) < 0.2).astype(np.float32))


def test_batches_are_the_epoch_in_order_with_a_padded_tail():
    n, batch = 1000, 128
    users, items, labels = random_epoch(0, n)
    steps = steps_for(n, batch)
    got = collect(users, items, labels, steps, batch)
    assert len(got) == steps == 8
    cat = [np.concatenate([b[k] for b in got]) for k in range(4)]
    for column, want in zip(cat[:3], (users, items, labels)):
        np.testing.assert_array_equal(column[:n], want)
        assert not column[n:].any(), "padding is zero"
    np.testing.assert_array_equal(cat[3], np.r_[np.ones(n), np.zeros(steps * batch - n)].astype(np.float32))
    assert all(b[k].dtype == d for b in got for k, d in enumerate((np.int32, np.int32, np.float32, np.float32)))


def test_the_columns_may_be_overwritten_once_the_dataset_is_built():
    """The runner writes the next epoch into the arrays it has just handed to train_dataset."""
    users, items, labels = random_epoch(1)
    kept = (users.copy(), items.copy(), labels.copy())
    dataset = train_dataset(tf.distribute.get_strategy(), users, items, labels, steps_for(1000, 128), 128, 1)
    for column in (users, items, labels):
        column[:] = column[::-1]
    got = [np.concatenate([t.numpy() for t in column]) for column in zip(*dataset)]
    for column, want in zip(got[:3], kept):
        np.testing.assert_array_equal(column[:1000], want)


def test_empty_shard_gives_one_all_padding_batch():
    empty = np.zeros(0, np.int32)
    (users, items, labels, valid), = collect(empty, empty, empty.astype(np.float32), 1, 64)
    assert users.shape == (64,) and not users.any() and not valid.any() and not labels.any()


def test_train_and_eval_datasets_run_without_autotuning():
    """With tf.data autotuning on, dropping an epoch's iterator blocked for about 1.9 s in half the
    epochs, inside the timed region (see harness.train.input_pipeline.PREFETCH_BATCHES)."""
    ids = np.zeros(10, np.int32)
    strategy = tf.distribute.get_strategy()
    train = train_dataset(strategy, ids, ids, ids.astype(np.float32), 1, 16, 1)
    eval_ = eval_dataset(strategy, np.zeros((4, 1000), np.int32), np.zeros((4, 1000), np.int8), 2, 1, 1, 0)[0]
    for dataset in (train, eval_):
        assert dataset.options().autotune.enabled is False


def test_order_by_user_sorts_a_batch_and_keeps_ties_in_order():
    users = np.array([5, 1, 5, 0, 1, 5], np.int32)
    items = np.arange(6, dtype=np.int32)
    labels = np.array([1, 0, 0, 1, 1, 0], np.float32)
    valid = np.array([1, 1, 1, 1, 1, 0], np.float32)
    got = order_by_user(users, items, labels, valid)
    np.testing.assert_array_equal(got[0], [0, 1, 1, 5, 5, 5])
    np.testing.assert_array_equal(got[1], [3, 1, 4, 0, 2, 5])   # ties keep their order
    np.testing.assert_array_equal(got[2], labels[got[1]])
    np.testing.assert_array_equal(got[3], valid[got[1]])
    assert [a.dtype for a in got] == [np.int32, np.int32, np.float32, np.float32]


def test_user_ordered_batches_are_the_same_batches_sorted():
    """Each batch holds exactly the examples of the unordered batch (padding included), by user."""
    n, batch = 1000, 128
    users, items, labels = random_epoch(1, n)
    steps = steps_for(n, batch)
    plain = collect(users, items, labels, steps, batch)
    ordered = collect(users, items, labels, steps, batch, user_order=True)
    assert len(ordered) == len(plain) == steps
    for got, want in zip(ordered, plain):
        assert np.all(np.diff(got[0]) >= 0), "sorted by user"
        rows = lambda b: sorted(zip(*(column.tolist() for column in b)))
        assert rows(got) == rows(want)
        assert [column.shape for column in got] == [(batch,)] * 4
