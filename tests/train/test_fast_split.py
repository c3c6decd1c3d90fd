"""The split first layer and per-batch distinct rows (harness.train.fast.split_mlp) against the model's forward.

Why: training and eval both compute the first MLP layer as user half + item half once per
distinct row; these tests pin the pieces that must be exactly right (distinct rows and the
per-example index, the capacity plan and its fallback bound) and the logits, which may differ
from `NeuMF.__call__` only by float rounding.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from harness.train.fast.choice import ALL_ROWS, DISTINCT, example_frequencies, expected_distinct, plan_side
from harness.train.fast.split_mlp import distinct_count, distinct_rows, split_logits
from reference.model import NeuMF

LOGIT_TOLERANCE = dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_distinct_rows_are_distinct_and_index_the_batch(jit):
    rng = np.random.default_rng(0)
    rows_total, capacity = 500, 300
    ids = rng.integers(0, 60, 400).astype(np.int32)
    ids[:5] = [499, 0, 499, 17, 0]
    fn = tf.function(lambda x: distinct_rows(x, rows_total, capacity), jit_compile=jit)
    rows, index = (t.numpy() for t in fn(tf.constant(ids)))
    present = np.unique(ids)
    assert rows.shape == (capacity,) and index.shape == ids.shape
    np.testing.assert_array_equal(rows[index], ids)
    assert len(np.unique(rows)) == capacity, "every slot a different row"
    np.testing.assert_array_equal(rows[: present.size], present)   # distinct ids first, ascending
    assert not np.isin(rows[present.size:], ids).any(), "padding rows are rows absent from the batch"
    assert rows.min() >= 0 and rows.max() < rows_total
    assert int(distinct_count(tf.constant(ids), rows_total)) == present.size


def test_plan_side_modes_and_capacity():
    assert plan_side(100, 256).mode == ALL_ROWS            # table no larger than the batch
    uniform = plan_side(138_493, 98_304)
    assert uniform.mode == DISTINCT and uniform.full_capacity == 98_304
    mean, std = expected_distinct(98_304, np.ones(138_493))
    assert mean + 8 * std <= uniform.capacity < mean + 8 * std + 257 and uniform.capacity % 256 == 0
    skewed = plan_side(138_493, 98_304, np.random.default_rng(1).pareto(1.2, 138_493) + 1)
    assert skewed.capacity < uniform.capacity, "uniform ids maximise the expected distinct count"
    assert skewed.needs_fallback


def test_expected_distinct_matches_simulation():
    rng = np.random.default_rng(2)
    freq = rng.pareto(1.0, 5000) + 1
    mean, std = expected_distinct(2000, freq)
    counts = [np.unique(rng.choice(5000, 2000, p=freq / freq.sum())).size for _ in range(200)]
    assert abs(np.mean(counts) - mean) < 3 * std / np.sqrt(200) + 1
    assert max(counts) < mean + 8 * std


@pytest.mark.parametrize("jit", [False, True])
def test_split_logits_equal_model_logits(jit):
    rng = np.random.default_rng(3)
    model = NeuMF(400, 90, seed=5)                          # closed-division widths
    users = tf.constant(rng.integers(0, 400, 256).astype(np.int32))
    items = tf.constant(rng.integers(0, 90, 256).astype(np.int32))

    def fast(u, i):
        rows, index = distinct_rows(u, 400, 256)
        return split_logits(model, tf.gather(model.embedding_user, rows), index,
                            tf.convert_to_tensor(model.embedding_item), i)   # items: whole table

    got = tf.function(fast, jit_compile=jit)(users, items).numpy()
    want = model(users, items).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, **LOGIT_TOLERANCE)


@pytest.mark.parametrize("jit", [False, True])
def test_split_logits_gradients_equal_model_gradients(jit):
    """The hand-written backward pass of the split first layer (stored-activation ReLU mask,
    bias gradient summed over item rows) gives autodiff's gradients of the plain model."""
    rng = np.random.default_rng(4)
    model = NeuMF(400, 90, seed=6)
    users = tf.constant(np.sort(rng.integers(0, 400, 512)).astype(np.int32))
    items = tf.constant(rng.integers(0, 90, 512).astype(np.int32))
    labels = tf.constant(rng.integers(0, 2, 512).astype(np.float32))
    variables = model.ordered_variables

    def loss_of(logits):
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))

    def fast(u, i):
        rows, index = distinct_rows(u, 400, 512)
        with tf.GradientTape() as tape:
            logits = split_logits(model, tf.gather(model.embedding_user, rows), index,
                                  tf.convert_to_tensor(model.embedding_item), i)
            loss = loss_of(logits)
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    def plain(u, i):
        with tf.GradientTape() as tape:
            loss = loss_of(model(u, i))
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    got = tf.function(fast, jit_compile=jit)(users, items)
    want = plain(users, items)
    preact = tf.concat([tf.gather(model.embedding_user, users)[:, model.mf_dim:],
                        tf.gather(model.embedding_item, items)[:, model.mf_dim:]], 1) @ model.mlp_kernels[0]
    dead = float(tf.reduce_mean(tf.cast(preact + model.mlp_biases[0] <= 0, tf.float32)))
    assert 0.2 < dead < 0.8, "the batch must exercise the ReLU mask both ways"
    for var, g, w in zip(variables, got, want):
        scale = float(tf.reduce_max(tf.abs(w)))
        assert scale > 0, var.name
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=0, atol=2e-5 * scale, err_msg=var.name)


def test_example_frequencies_follow_positives():
    data = SimpleNamespace(num_users=3, num_items=4, train_users=np.array([0, 0, 0, 2], np.int32),
                           train_items=np.array([1, 2, 3, 1], np.int32))
    users, items = example_frequencies(data, num_neg=4)
    np.testing.assert_array_equal(users, [3, 0, 1])
    np.testing.assert_allclose(items, np.array([0, 2, 1, 1]) + 4 * 4 / 4)
