"""HR/NDCG and eval loss (reference/metrics.py) against the seed's code re-typed as an oracle.

The two `seed_*` functions below are the TF Model Garden `neumf_model.py` functions
`compute_top_k_and_ndcg` and the loss part of `compute_eval_loss_and_metrics_helper`, re-typed
with only the constants module renamed (and the oracle also handing back its position vector).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from reference.constants import EVAL_ROW, NUM_EVAL_NEGATIVES, TOP_K, TRUE_ITEM_COLUMN
from reference.eval_rows import duplicate_mask, eval_items, padding_rows
from reference.metrics import (compute_top_k_and_ndcg, eval_loss, eval_loss_sums, hit_and_ndcg_sums, hit_rate_numpy,
                               rank_of_true_item, true_item_positions_numpy)

F32_MIN = np.finfo(np.float32).min


# --------------------------------------------------------------------------- the seed, re-typed

def seed_compute_top_k_and_ndcg(logits, duplicate_mask, match_mlperf=False, return_position=False):
    logits_by_user = tf.reshape(logits, (-1, NUM_EVAL_NEGATIVES + 1))
    duplicate_mask_by_user = tf.cast(
        tf.reshape(duplicate_mask, (-1, NUM_EVAL_NEGATIVES + 1)),
        logits_by_user.dtype)

    if match_mlperf:
        # Set duplicate logits to the min value for that dtype. The MLPerf
        # reference dedupes during evaluation.
        logits_by_user *= (1 - duplicate_mask_by_user)
        logits_by_user += duplicate_mask_by_user * logits_by_user.dtype.min

    # Determine the location of the first element in each row after the elements
    # are sorted.
    sort_indices = tf.argsort(
        logits_by_user, axis=1, direction="DESCENDING")

    # Use matrix multiplication to extract the position of the true item from the
    # tensor of sorted indices. This approach is chosen because both GPUs and TPUs
    # perform matrix multiplications very quickly. This is similar to np.argwhere.
    # However this is a special case because the target will only appear in
    # sort_indices once.
    one_hot_position = tf.cast(tf.equal(sort_indices, NUM_EVAL_NEGATIVES),
                               tf.int32)
    sparse_positions = tf.multiply(
        one_hot_position, tf.range(logits_by_user.shape[1])[tf.newaxis, :])
    position_vector = tf.reduce_sum(sparse_positions, axis=1)

    in_top_k = tf.cast(tf.less(position_vector, TOP_K), tf.float32)
    ndcg = tf.math.log(2.) / tf.math.log(
        tf.cast(position_vector, tf.float32) + 2)
    ndcg *= in_top_k

    # If a row is a padded row, all but the first element will be a duplicate.
    metric_weights = tf.not_equal(tf.reduce_sum(duplicate_mask_by_user, axis=1),
                                  NUM_EVAL_NEGATIVES)

    if return_position:
        return in_top_k, ndcg, metric_weights, logits_by_user, position_vector
    return in_top_k, ndcg, metric_weights, logits_by_user


def seed_eval_cross_entropy(logits, duplicate_mask, num_training_neg, match_mlperf=False):
    softmax_logits = tf.concat([logits[:, tf.newaxis] * 0, logits[:, tf.newaxis]], axis=1)  # convert_to_softmax_logits
    in_top_k, ndcg, metric_weights, logits_by_user = seed_compute_top_k_and_ndcg(
        logits, duplicate_mask, match_mlperf)

    # Examples are provided by the eval Dataset in a structured format, so eval
    # labels can be reconstructed on the fly.
    eval_labels = tf.reshape(shape=(-1,), tensor=tf.one_hot(
        tf.zeros(shape=(logits_by_user.shape[0],), dtype=tf.int32) +
        NUM_EVAL_NEGATIVES, logits_by_user.shape[1], dtype=tf.int32))

    eval_labels_float = tf.cast(eval_labels, tf.float32)

    negative_scale_factor = num_training_neg / NUM_EVAL_NEGATIVES
    example_weights = (
        (eval_labels_float + (1 - eval_labels_float) * negative_scale_factor) *
        (1 + NUM_EVAL_NEGATIVES) / (1 + num_training_neg))

    # Tile metric weights back to logit dimensions
    expanded_metric_weights = tf.reshape(tf.tile(
        metric_weights[:, tf.newaxis], (1, NUM_EVAL_NEGATIVES + 1)), (-1,))

    # ignore padded examples
    example_weights *= tf.cast(expanded_metric_weights, tf.float32)

    cross_entropy = tf.compat.v1.losses.sparse_softmax_cross_entropy(
        logits=softmax_logits, labels=eval_labels, weights=example_weights)
    return cross_entropy


# ------------------------------------------------------------------------------- test data

def adversarial_eval_batch(seed: int, num_users: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat float32 logits, flat int8 mask, items [U, 1000]) full of ties, repeats and padding.

    Items come from catalogues of 1 to 100,000 items with replacement (so repeats and the true
    item among its negatives are common). Logits per row, one of five styles: shared by equal
    items (the real-model case: duplicates tie), drawn per candidate from a small set with signed
    zeros, a true item with a random handful of negatives tying or beating it (positions spread
    around TOP_K), continuous, and a true logit at float32's minimum (ties with masked values).
    About 5% padding rows.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 3, 30, 700, 100_000], size=num_users)
    items = eval_items(rng.integers(0, sizes[:, None], (num_users, NUM_EVAL_NEGATIVES)),
                       rng.integers(0, sizes))
    padded = rng.random(num_users) < 0.05
    items[padded] = padding_rows(int(padded.sum()))[0]
    mask = duplicate_mask(items)

    values = np.array([-1.5, -0.0, 0.0, 0.5, 2.0], np.float32)
    style = rng.integers(0, 5, num_users)
    per_item = rng.choice(values, size=int(items.max()) + 1)[items]            # style 0
    per_candidate = rng.choice(values, size=items.shape)                        # style 1
    boundary = rng.choice(values[:3], size=items.shape)                         # style 2
    boundary[:, TRUE_ITEM_COLUMN] = 0.5
    beat = rng.random(items.shape) < (rng.integers(0, 25, num_users) / NUM_EVAL_NEGATIVES)[:, None]
    boundary[beat] = rng.choice([0.5, 2.0], size=int(beat.sum()))
    boundary[:, TRUE_ITEM_COLUMN] = 0.5
    continuous = rng.standard_normal(items.shape).astype(np.float32)            # style 3
    at_min = np.where(rng.random(items.shape) < 0.01, F32_MIN, per_candidate)   # style 4
    at_min[:, TRUE_ITEM_COLUMN] = F32_MIN
    logits = np.choose(style[:, None], [per_item, per_candidate, boundary, continuous, at_min])
    return logits.astype(np.float32).reshape(-1), mask.reshape(-1), items


@pytest.fixture(scope="module")
def batch():
    return adversarial_eval_batch(seed=11)


def numpy_of(tensors):
    return [t.numpy() for t in tensors]


# ------------------------------------------------------------------ equality with the oracle

@pytest.mark.parametrize("match_mlperf", [False, True])
def test_compute_top_k_and_ndcg_is_identical_to_the_seed(batch, match_mlperf):
    logits, mask, _ = batch
    *expected, expected_position = numpy_of(
        seed_compute_top_k_and_ndcg(logits, mask.astype(np.float32), match_mlperf, return_position=True))
    got = numpy_of(compute_top_k_and_ndcg(tf.constant(logits), tf.constant(mask), match_mlperf))
    assert got[2].dtype == np.bool_ and got[0].dtype == got[1].dtype == np.float32
    for mine, seed in zip(got, expected):
        np.testing.assert_array_equal(mine, seed)
    # The comparison is only worth something if the data exercise hits, misses and the boundary.
    assert {9, 10} <= set(expected_position.tolist())
    assert 0.05 < expected[0].mean() < 0.95
    assert 0 < (~expected[2]).sum() < len(expected[2])


@pytest.mark.parametrize("match_mlperf", [False, True])
def test_fast_position_equals_the_seed_position(batch, match_mlperf):
    logits, mask, _ = batch
    position = seed_compute_top_k_and_ndcg(logits, mask.astype(np.float32), match_mlperf, return_position=True)[-1]
    np.testing.assert_array_equal(rank_of_true_item(logits, mask, match_mlperf).numpy(), position.numpy())
    np.testing.assert_array_equal(
        rank_of_true_item(logits.reshape(-1, EVAL_ROW), mask.reshape(-1, EVAL_ROW), match_mlperf).numpy(),
        position.numpy())
    np.testing.assert_array_equal(true_item_positions_numpy(logits, mask, match_mlperf), position.numpy())


def test_match_mlperf_changes_the_positions_of_the_batch(batch):
    """Guards the data: with no effect of match_mlperf the tests above would not test it."""
    logits, mask, _ = batch
    plain = rank_of_true_item(logits, mask, False).numpy()
    matched = rank_of_true_item(logits, mask, True).numpy()
    assert (matched <= plain).all() and (matched < plain).mean() > 0.1


@pytest.mark.parametrize("match_mlperf", [False, True])
def test_any_mask_pattern_gives_the_seed_arithmetic(match_mlperf):
    """Masks that break the convention (even the true column masked) still follow the seed's arithmetic."""
    rng = np.random.default_rng(3)
    logits = rng.choice(np.array([-1.0, 0.0, 1.0, F32_MIN], np.float32), size=300 * EVAL_ROW)
    mask = (rng.random(300 * EVAL_ROW) < rng.choice([0.0, 0.01, 0.5, 1.0], size=300).repeat(EVAL_ROW)).astype(np.float32)
    *expected, position = numpy_of(seed_compute_top_k_and_ndcg(logits, mask, match_mlperf, return_position=True))
    for mine, seed in zip(numpy_of(compute_top_k_and_ndcg(logits, mask, match_mlperf)), expected):
        np.testing.assert_array_equal(mine, seed)
    np.testing.assert_array_equal(rank_of_true_item(logits, mask, match_mlperf).numpy(), position)


@pytest.mark.parametrize("match_mlperf", [False, True])
def test_batch_sums_and_numpy_twin_give_the_seed_means(batch, match_mlperf):
    logits, mask, _ = batch
    in_top_k, ndcg, weights, _ = numpy_of(seed_compute_top_k_and_ndcg(logits, mask.astype(np.float32), match_mlperf))
    hits, ndcg_sum, users = numpy_of(hit_and_ndcg_sums(logits, mask, match_mlperf))
    assert hits.dtype == users.dtype == np.int32 and ndcg_sum.dtype == np.float32
    assert hits == in_top_k[weights].sum() and users == weights.sum()
    np.testing.assert_allclose(ndcg_sum, ndcg[weights].sum(dtype=np.float64), rtol=1e-6)
    hr, mean_ndcg = hit_rate_numpy(logits, mask, match_mlperf)
    assert hr == in_top_k[weights].sum() / weights.sum()
    np.testing.assert_allclose(mean_ndcg, ndcg[weights].sum(dtype=np.float64) / weights.sum(), rtol=1e-6)


def test_compiled_fast_path_equals_eager():
    """XLA (the TPU and jit_compile path) must not change positions or counts.

    NDCG may differ in the last bit: XLA's float32 log is not TF's eager kernel.
    """
    logits, mask, _ = adversarial_eval_batch(seed=4, num_users=200)

    @tf.function(jit_compile=True)
    def compiled(x, m):
        return rank_of_true_item(x, m, True), hit_and_ndcg_sums(x, m, True)

    position, (hits, ndcg_sum, users) = compiled(logits, mask)
    eager_hits, eager_ndcg_sum, eager_users = numpy_of(hit_and_ndcg_sums(logits, mask, True))
    np.testing.assert_array_equal(position.numpy(), rank_of_true_item(logits, mask, True).numpy())
    assert (hits.numpy(), users.numpy()) == (eager_hits, eager_users)
    np.testing.assert_allclose(ndcg_sum.numpy(), eager_ndcg_sum, rtol=1e-6)


# ------------------------------------------------------------------------------ worked cases

def worked_example_row() -> tuple[np.ndarray, np.ndarray]:
    """docs/reference-facts.md §3: true item 5.0; 8 distinct negatives 9.0; one negative item twice at 7.0; rest < 5."""
    rng = np.random.default_rng(0)
    negatives = np.arange(100, 100 + NUM_EVAL_NEGATIVES)      # distinct items, none the true item
    negatives[9] = negatives[8]                               # the item drawn twice
    scores = rng.uniform(-3.0, 4.9, NUM_EVAL_NEGATIVES)
    scores[:8], scores[8:10] = 9.0, 7.0
    order = rng.permutation(NUM_EVAL_NEGATIVES)               # spread them over the row
    items = eval_items(negatives[order][None, :], np.array([7]))
    logits = np.append(scores[order], 5.0).astype(np.float32)
    return logits, duplicate_mask(items).reshape(-1)


@pytest.mark.parametrize("match_mlperf, position", [(False, 10), (True, 9)])
def test_reference_worked_example(match_mlperf, position):
    logits, mask = worked_example_row()
    assert mask.sum() == 1
    in_top_k, ndcg, weights, _ = numpy_of(compute_top_k_and_ndcg(logits, mask, match_mlperf))
    seed = numpy_of(seed_compute_top_k_and_ndcg(logits, mask.astype(np.float32), match_mlperf))
    assert rank_of_true_item(logits, mask, match_mlperf).numpy().tolist() == [position]
    assert weights.tolist() == [True]
    if match_mlperf:
        assert in_top_k.tolist() == [1.0]
        assert ndcg[0] == pytest.approx(math.log(2) / math.log(11), rel=1e-6)
    else:
        assert in_top_k.tolist() == [0.0] and ndcg.tolist() == [0.0]
    np.testing.assert_array_equal(in_top_k, seed[0])
    np.testing.assert_array_equal(ndcg, seed[1])


def test_the_true_item_loses_every_tie():
    logits = np.zeros(EVAL_ROW, np.float32)
    logits[[0, 500, 998, TRUE_ITEM_COLUMN]] = 1.0
    assert rank_of_true_item(logits, np.zeros(EVAL_ROW), False).numpy().tolist() == [3]
    flat = np.ones(EVAL_ROW, np.float32)      # a model that scores everything alike gets nothing
    in_top_k, ndcg, _, _ = compute_top_k_and_ndcg(flat, np.zeros(EVAL_ROW))
    assert in_top_k.numpy().tolist() == [0.0] and ndcg.numpy().tolist() == [0.0]


def test_a_nan_true_logit_is_a_miss_on_every_path():
    logits = np.zeros(EVAL_ROW, np.float32)
    logits[TRUE_ITEM_COLUMN] = np.nan
    mask = np.zeros(EVAL_ROW, np.int8)
    assert compute_top_k_and_ndcg(logits, mask)[0].numpy().tolist() == [0.0]
    assert rank_of_true_item(logits, mask, True).numpy().tolist() == [TRUE_ITEM_COLUMN]
    assert hit_and_ndcg_sums(logits, mask)[0].numpy() == 0
    assert hit_rate_numpy(logits, mask) == (0.0, 0.0)


def test_padding_rows_weigh_nothing_whatever_their_logits():
    _, pad_mask = padding_rows(2)
    logits = np.full(2 * EVAL_ROW, -5.0, np.float32)
    logits[TRUE_ITEM_COLUMN::EVAL_ROW] = 10.0                 # top of the row, would be a hit
    in_top_k, _, weights, _ = compute_top_k_and_ndcg(logits, pad_mask.reshape(-1), True)
    assert in_top_k.numpy().tolist() == [1.0, 1.0] and weights.numpy().tolist() == [False, False]
    assert [int(x) for x in hit_and_ndcg_sums(logits, pad_mask, True)] == [0, 0, 0]
    assert hit_rate_numpy(logits, pad_mask, True) == (0.0, 0.0)


def test_row_weights_stay_exact_for_bfloat16_logits():
    """The seed sums the mask in the logits' dtype; bfloat16 would stall at 256 and keep padding rows."""
    _, pad_mask = padding_rows(1)
    logits = tf.zeros([EVAL_ROW], tf.bfloat16)
    assert compute_top_k_and_ndcg(logits, pad_mask)[2].numpy().tolist() == [False]


# -------------------------------------------------------------------------------- eval loss

@pytest.mark.parametrize("num_training_neg, match_mlperf", [(4, False), (4, True), (1, True), (10, False)])
def test_eval_loss_equals_the_seed_cross_entropy(batch, num_training_neg, match_mlperf):
    mask = batch[1][:1000 * EVAL_ROW]          # 1,000 rows, padding among them
    logits = np.random.default_rng(num_training_neg).normal(0.0, 3.0, mask.shape).astype(np.float32)
    expected = seed_eval_cross_entropy(tf.constant(logits), mask.astype(np.float32), num_training_neg, match_mlperf)
    got = eval_loss(logits, mask, num_training_neg, match_mlperf)
    assert got.dtype == tf.float32 and got.shape == ()
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=2e-6)


def test_eval_loss_sums_added_over_batches_give_the_whole_sets_loss(batch):
    _, mask, _ = batch
    logits = np.random.default_rng(2).normal(0.0, 3.0, mask.shape).astype(np.float32)
    cut = 337 * EVAL_ROW                       # two batches of unequal size, padding in the second
    parts = [eval_loss_sums(logits[:cut], mask[:cut]), eval_loss_sums(logits[cut:], mask[cut:])]
    total = sum(float(p[0]) for p in parts) / sum(float(p[1]) for p in parts)
    np.testing.assert_allclose(total, eval_loss(logits, mask).numpy(), rtol=1e-5)


def test_eval_loss_ignores_padding_rows_and_is_zero_without_real_rows(batch):
    _, mask, _ = batch
    real = mask.reshape(-1, EVAL_ROW).sum(axis=1) != NUM_EVAL_NEGATIVES
    logits = np.random.default_rng(1).normal(0.0, 3.0, mask.shape).astype(np.float32)
    full = eval_loss(logits, mask).numpy()
    real_only = eval_loss(logits.reshape(-1, EVAL_ROW)[real], mask.reshape(-1, EVAL_ROW)[real]).numpy()
    np.testing.assert_allclose(full, real_only, rtol=1e-6)
    _, pad_mask = padding_rows(3)
    assert eval_loss(np.ones(3 * EVAL_ROW, np.float32), pad_mask).numpy() == 0.0
    assert seed_eval_cross_entropy(tf.ones(3 * EVAL_ROW), pad_mask.reshape(-1).astype(np.float32), 4).numpy() == 0.0
