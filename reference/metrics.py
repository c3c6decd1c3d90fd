"""HR@10, NDCG@10 and the eval loss exactly as the seed (TF Model Garden `neumf_model.py`).

Contract (the seed's): `logits` is flat, shape (users * 1000,), grouped by user, each group laid
out as `reference.eval_rows` builds it: 999 eval negatives, then the true item LAST (column
`TRUE_ITEM_COLUMN`). `duplicate_mask` has the same number of elements, 1 where the candidate
repeats an item already in the row (the true item counting as first), any numeric dtype.

Ranking rule (docs/reference-facts.md §3): sort a row's logits descending; ties go to the LOWER column, as
TF's argsort (built on `top_k`) orders them. The true item is in the highest column, so it
loses every tie, which is the MLPerf policy "the test positive must always come last if there
is a tie": a model that scores everything alike (e.g. a dead network, or rounding) must not
get hits for free. `position` is the 0-based rank of column 999; hit = position < TOP_K;
NDCG = log 2 / log(position + 2) on a hit, else 0. With `match_mlperf` (closed division),
duplicate candidates are first pushed to the dtype's minimum so each distinct item counts once.

Why eval logits should be float32: ranking is decided by exact comparisons. In bfloat16 (8
significant bits) or float16 many candidates round to the same logit, and every such tie counts
against the true item, so HR drops for reasons that have nothing to do with the model. The
functions here keep the seed's arithmetic in the logits' own dtype; the model must hand over
float32 logits (computing only the final layer in float32 is enough; casting low-precision
logits up afterwards does not undo the ties). The row weights are counted in int32, which is
what the seed's float sum gives for float16/32/64 logits, and stays exact for bfloat16, whose
running sum of 999 ones would stall at 256.

NaN logits (a diverged model): TF's sort order for NaN is unspecified. Both ranking paths here
pin one thing: a row whose true logit is NaN is a miss (position 999), so divergence can never
score. How NaN negatives rank is left as each path makes it (the fast path never counts them).

Two ranking paths, equal whenever the logits are not NaN:
- `compute_top_k_and_ndcg`: the seed's full argsort, kept verbatim as the plain reference;
- `rank_of_true_item` / `hit_and_ndcg_sums`: count the columns that beat the true item instead
  of sorting (O(n), no sort kernel, independent of a backend's sort stability). This is what a
  timed eval should run; tests check it against the argsort path.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from reference.constants import EVAL_ROW, NUM_EVAL_NEGATIVES, NUM_NEG, TOP_K, TRUE_ITEM_COLUMN


# ---------------------------------------------------------------------------- shared pieces (TF)

def _by_user(values: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Reshape a flat (users * 1000,) tensor (or an already [users, 1000] one) to [users, 1000]."""
    return tf.cast(tf.reshape(values, (-1, EVAL_ROW)), dtype)


def mask_duplicates(logits_by_user: tf.Tensor, mask_by_user: tf.Tensor) -> tf.Tensor:
    """The seed's match_mlperf arithmetic: duplicates get exactly `dtype.min`, others unchanged.

    `logits * (1 - mask) + mask * dtype.min`, verbatim: for finite logits it equals a `tf.where`,
    and it keeps the seed's result for infinite ones too (0 * inf is NaN). A masked candidate
    ties with a true logit equal to `dtype.min` and, being in a lower column, beats it.
    """
    masked = logits_by_user * (1 - mask_by_user)
    return masked + mask_by_user * logits_by_user.dtype.min


def _ranking_inputs(logits: tf.Tensor, duplicate_mask: tf.Tensor,
                    match_mlperf: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """(logits_by_user as ranked, mask_by_user in the logits' dtype), as the seed prepares them."""
    logits = tf.convert_to_tensor(logits)
    logits_by_user = tf.reshape(logits, (-1, EVAL_ROW))
    mask_by_user = _by_user(duplicate_mask, logits_by_user.dtype)
    if match_mlperf:
        logits_by_user = mask_duplicates(logits_by_user, mask_by_user)
    return logits_by_user, mask_by_user


def _nan_true_item_misses(position: tf.Tensor, logits_by_user: tf.Tensor) -> tf.Tensor:
    """Send rows whose true logit is NaN to the last position (a miss); see the module docstring."""
    nan_true = tf.math.is_nan(logits_by_user[:, TRUE_ITEM_COLUMN])
    return tf.where(nan_true, tf.constant(TRUE_ITEM_COLUMN, position.dtype), position)


def row_weights(duplicate_mask: tf.Tensor) -> tf.Tensor:
    """bool [users]: False for padding rows, whose 999 negatives are all duplicates (the seed's test)."""
    duplicates = tf.reduce_sum(_by_user(duplicate_mask, tf.int32), axis=1)
    return tf.not_equal(duplicates, NUM_EVAL_NEGATIVES)


def _hit_and_ndcg(position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-user in_top_k and NDCG (float32) from 0-based positions, with the seed's float ops."""
    in_top_k = tf.cast(tf.less(position, TOP_K), tf.float32)
    ndcg = tf.math.log(2.) / tf.math.log(tf.cast(position, tf.float32) + 2)
    return in_top_k, ndcg * in_top_k


# ------------------------------------------------------------------------- reference path (TF)

def compute_top_k_and_ndcg(logits: tf.Tensor, duplicate_mask: tf.Tensor,
                           match_mlperf: bool = False
                           ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """The seed's metric inputs: (in_top_k, ndcg, metric_weights, logits_by_user).

    Args:
        logits: (users * 1000,) float logits, true item last in each group of 1000.
        duplicate_mask: same number of elements, 1 for a repeated candidate (any numeric dtype).
        match_mlperf: push duplicates to `dtype.min` first (MLPerf closed division).
    Returns:
        in_top_k float32 [users] (1.0 on a hit), ndcg float32 [users] (0 on a miss),
        metric_weights bool [users] (False on padding rows, as the seed), and logits_by_user
        [users, 1000] as ranked (masked when match_mlperf). HR = weighted mean of in_top_k.

    The position comes from a full descending argsort, as in the seed: the one-hot of the
    sorted indices equal to column 999, times the column range, summed per row.
    """
    logits_by_user, mask_by_user = _ranking_inputs(logits, duplicate_mask, match_mlperf)
    sort_indices = tf.argsort(logits_by_user, axis=1, direction="DESCENDING")
    one_hot_position = tf.cast(tf.equal(sort_indices, TRUE_ITEM_COLUMN), tf.int32)
    position = tf.reduce_sum(one_hot_position * tf.range(EVAL_ROW)[tf.newaxis, :], axis=1)
    position = _nan_true_item_misses(position, logits_by_user)
    in_top_k, ndcg = _hit_and_ndcg(position)
    return in_top_k, ndcg, row_weights(mask_by_user), logits_by_user


# ------------------------------------------------------------------------------ fast path (TF)

def rank_of_true_item(logits: tf.Tensor, duplicate_mask: tf.Tensor,
                      match_mlperf: bool = False) -> tf.Tensor:
    """int32 [users]: the true item's 0-based position, without sorting.

    The seed's position is #{j : logit_j > logit_999} + #{j < 999 : logit_j == logit_999}
    (ties go to the lower column and every other column is lower than 999), which is simply
    #{j < 999 : logit_j >= logit_999}. Equal to the argsort path for every non-NaN input,
    including the masked `dtype.min` values and signed zeros (-0.0 == 0.0 is a tie in both).
    Accepts flat (users * 1000,) or [users, 1000] inputs.
    """
    logits_by_user, _ = _ranking_inputs(logits, duplicate_mask, match_mlperf)
    true_logit = logits_by_user[:, TRUE_ITEM_COLUMN:]
    beaten_by = tf.greater_equal(logits_by_user[:, :TRUE_ITEM_COLUMN], true_logit)
    position = tf.reduce_sum(tf.cast(beaten_by, tf.int32), axis=1)
    return _nan_true_item_misses(position, logits_by_user)


def hit_and_ndcg_sums(logits: tf.Tensor, duplicate_mask: tf.Tensor,
                      match_mlperf: bool = False) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(hits int32, ndcg_sum float32, users int32) over the real rows of one batch.

    What a (distributed) eval step returns and all-reduces with SUM: HR@10 = total hits / total
    users and NDCG@10 = total ndcg_sum / total users, the seed's weighted means. Counts are
    integers so they stay exact at any scale; accumulate ndcg_sum across batches in float64.
    """
    position = rank_of_true_item(logits, duplicate_mask, match_mlperf)
    in_top_k, ndcg = _hit_and_ndcg(position)
    weights = row_weights(duplicate_mask)
    hits = tf.reduce_sum(tf.cast(tf.logical_and(weights, in_top_k > 0), tf.int32))
    ndcg_sum = tf.reduce_sum(tf.where(weights, ndcg, tf.zeros_like(ndcg)))
    return hits, ndcg_sum, tf.reduce_sum(tf.cast(weights, tf.int32))


# ---------------------------------------------------------------------------------- eval loss

def eval_loss(logits: tf.Tensor, duplicate_mask: tf.Tensor, num_training_neg: int = NUM_NEG,
              match_mlperf: bool = False) -> tf.Tensor:
    """The seed's eval `cross_entropy`: float32 scalar, comparable with the training loss.

    Softmax cross-entropy over [0, logit] (= sigmoid cross-entropy), label 1 on column 999 only.
    Eval rows hold 999 negatives per positive where training holds `num_training_neg`, so each
    candidate is weighted (label + (1 - label) * num_training_neg / 999) * 1000 / (1 +
    num_training_neg), i.e. the training mix, times the row's metric weight (padding rows 0).
    Reduced as TF's SUM_BY_NONZERO_WEIGHTS: sum(w * ce) / count_nonzero(w), 0 if all w are 0.

    `match_mlperf` is accepted so callers can pass the same arguments as to the metrics; it has
    no effect, as in the seed, whose loss uses the unmasked logits.
    """
    del match_mlperf  # the seed computes the loss from the unmasked logits
    total, count = eval_loss_sums(logits, duplicate_mask, num_training_neg)
    return tf.math.divide_no_nan(total, count)


def eval_loss_sums(logits: tf.Tensor, duplicate_mask: tf.Tensor,
                   num_training_neg: int = NUM_NEG) -> tuple[tf.Tensor, tf.Tensor]:
    """float32 (sum(w * ce), count_nonzero(w)): `eval_loss`'s numerator and denominator.

    Why apart: an eval set is scored in batches (and shards), and the loss over the whole set is
    the ratio of these two sums added over batches, which averaging per-batch means would not give
    when batches hold different numbers of real rows.
    """
    logits = tf.reshape(tf.convert_to_tensor(logits), (-1,))
    num_rows = tf.shape(logits)[0] // EVAL_ROW
    labels = tf.reshape(tf.one_hot(tf.fill([num_rows], TRUE_ITEM_COLUMN), EVAL_ROW, dtype=tf.int32), (-1,))
    labels_float = tf.cast(labels, tf.float32)
    negative_scale_factor = num_training_neg / NUM_EVAL_NEGATIVES
    weights = ((labels_float + (1 - labels_float) * negative_scale_factor)
               * EVAL_ROW / (1 + num_training_neg))
    row_weight = tf.cast(row_weights(duplicate_mask), tf.float32)
    weights *= tf.reshape(tf.tile(row_weight[:, tf.newaxis], (1, EVAL_ROW)), (-1,))
    softmax_logits = tf.stack([tf.zeros_like(logits), logits], axis=1)
    cross_entropy = tf.cast(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=softmax_logits), tf.float32)
    return tf.reduce_sum(cross_entropy * weights), tf.cast(tf.math.count_nonzero(weights), tf.float32)


# ------------------------------------------------------------------------------- numpy twin

def true_item_positions_numpy(logits: np.ndarray, duplicate_mask: np.ndarray,
                              match_mlperf: bool = False) -> np.ndarray:
    """int64 [users]: `rank_of_true_item` in plain numpy, for host-side checks without TF.

    Same arithmetic in the logits' dtype (pass float32 to match the device exactly).
    """
    logits_by_user = np.asarray(logits).reshape(-1, EVAL_ROW)
    if match_mlperf:
        mask_by_user = np.asarray(duplicate_mask).reshape(-1, EVAL_ROW).astype(logits_by_user.dtype)
        logits_by_user = (logits_by_user * (1 - mask_by_user)
                          + mask_by_user * np.finfo(logits_by_user.dtype).min)
    true_logit = logits_by_user[:, TRUE_ITEM_COLUMN:]
    position = np.sum(logits_by_user[:, :TRUE_ITEM_COLUMN] >= true_logit, axis=1, dtype=np.int64)
    return np.where(np.isnan(true_logit[:, 0]), TRUE_ITEM_COLUMN, position)


def hit_rate_numpy(logits: np.ndarray, duplicate_mask: np.ndarray,
                   match_mlperf: bool = False) -> tuple[float, float]:
    """(HR@10, NDCG@10) over the real rows, in numpy (NDCG in float64); (0, 0) for no real rows."""
    position = true_item_positions_numpy(logits, duplicate_mask, match_mlperf)
    real = np.asarray(duplicate_mask).reshape(-1, EVAL_ROW).astype(np.int64).sum(axis=1) != NUM_EVAL_NEGATIVES
    hit = real & (position < TOP_K)
    if not real.any():
        return 0.0, 0.0
    ndcg = np.where(hit, np.log(2.0) / np.log(position + 2.0), 0.0)
    return float(hit.sum() / real.sum()), float(ndcg.sum() / real.sum())
