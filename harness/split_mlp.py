"""NeuMF's first MLP layer split into its user half and item half, and per-batch distinct rows.

The first hidden layer multiplies concat(user_mlp, item_mlp) by a kernel [2h, layers[1]], which
is the sum of two products: user_mlp @ kernel[:h] + item_mlp @ kernel[h:]. The user product
depends on the user only, the item product on the item only, so each can be computed once per
distinct user / item and then gathered per example. That is where most of NeuMF's arithmetic
goes (about 60% of the forward multiply-adds, REFERENCE §4), and it is what lets
eval pass the naive ceiling of "0.21 MFLOP per candidate pair":
  * eval: once per user of the batch and once per item of the catalogue, instead of 1,000 times;
  * training: once per distinct user / item of a batch (for a side whose whole table is smaller
    than the batch, once per row of the table, which needs no deduplication at all).

Arithmetic: mathematically identical to `NeuMF.__call__`; in floating point the first layer's
sum runs in a different order (two products of length h added, instead of one of length 2h),
so logits agree to float tolerance, not bit for bit (tests/test_fast_eval.py measures how far).

Distinct rows need a static size under XLA. `distinct_rows` uses a capacity fixed at trace time
and the caller checks the true count (`distinct_count`) against it, falling back to a full-size
variant when a batch has more distinct rows than planned: the result never depends on the plan,
only the speed does (`harness.fast_paths.SidePlan`, planned without TensorFlow).
"""
from __future__ import annotations

import tensorflow as tf

from reference.model import NeuMF


def distinct_count(ids: tf.Tensor, num_rows: int) -> tf.Tensor:
    """int32 scalar: how many distinct ids (in [0, num_rows)) the batch holds. O(batch + rows)."""
    present = tf.scatter_nd(ids[:, tf.newaxis], tf.ones_like(ids, tf.int32), [num_rows])
    return tf.math.count_nonzero(present, dtype=tf.int32)


def distinct_rows(ids: tf.Tensor, num_rows: int, capacity: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(rows int32 [capacity], index int32 [batch]) with rows[index] == ids, rows all different.

    See `distinct_rows_and_slots`, which also returns where each table row went.
    """
    rows, index, _ = distinct_rows_and_slots(ids, num_rows, capacity)
    return rows, index


def distinct_rows_and_slots(ids: tf.Tensor, num_rows: int,
                            capacity: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(rows [capacity], index [batch], slots [num_rows]), int32, with rows[index] == ids.

    The first `count` entries of `rows` are the batch's distinct ids in ascending order; the
    remaining entries are other, not-present rows, also all different (the lowest-numbered ones).
    Keeping every entry a distinct, valid row lets callers treat the padding like any row with a
    zero gradient (exactly what dense Adam does to it) and scatter results back without
    out-of-range indices or write conflicts. Requires count <= capacity <= num_rows (the caller
    checks count; see `SidePlan`). Sort-free and XLA-friendly: one scatter, one cumsum.

    slots[r] is the position of table row r in `rows`, or `capacity` if it is not there: a
    gradient over `rows`, with a zero row appended, gathered by `slots` is the dense gradient of
    the whole table, without a scatter (see `dense_from_rows`).
    """
    ids = tf.cast(ids, tf.int32)
    present = tf.minimum(tf.scatter_nd(ids[:, tf.newaxis], tf.ones_like(ids), [num_rows]), 1)
    rank_present = tf.cumsum(present) - 1                  # slot of a present row
    count = rank_present[-1] + 1
    rank_absent = count + tf.cumsum(1 - present) - 1       # slots after the present rows
    slot = tf.where(present > 0, rank_present, tf.minimum(rank_absent, capacity))
    # Slot `capacity` collects the overflow of absent rows (summed, then dropped).
    rows = tf.scatter_nd(slot[:, tf.newaxis], tf.range(num_rows, dtype=tf.int32), [capacity + 1])[:capacity]
    return rows, tf.gather(rank_present, ids), slot


def dense_from_rows(values: tf.Tensor, slots: tf.Tensor) -> tf.Tensor:
    """[num_rows, d] table-shaped tensor from per-row values [capacity, d]: zero where no row went.

    A gather, not a scatter: XLA can fuse it into the consumer (dense Adam reads the gradient
    straight from the compact rows) instead of zero-filling and scattering a table-sized array.
    """
    padded = tf.concat([values, tf.zeros_like(values[:1])], axis=0)
    return tf.gather(padded, slots)


def first_layer_halves(model: NeuMF) -> tuple[tf.Tensor, tf.Tensor]:
    """(user half, item half) of the first hidden layer's kernel, in the model's compute dtype."""
    half = model.layers[0] // 2
    kernel = tf.cast(model.mlp_kernels[0], model.compute_dtype)
    return kernel[:half], kernel[half:]


def half_activation(model: NeuMF, rows: tf.Tensor, kernel_half: tf.Tensor) -> tf.Tensor:
    """[n, layers[1]]: the MLP part of embedding rows [n, width] times one half of the kernel."""
    mlp = tf.cast(rows[:, model.mf_dim:], model.compute_dtype)
    return tf.matmul(mlp, kernel_half)


def logits_from_halves(model: NeuMF, user_mf: tf.Tensor, item_mf: tf.Tensor,
                       user_half: tf.Tensor, item_half: tf.Tensor) -> tf.Tensor:
    """Float32 logits [n] from per-example GMF parts [n, mf] and first-layer halves [n, layers[1]].

    The same operations as `NeuMF.__call__` after its first matmul: bias, ReLU tower, output.
    """
    dtype = model.compute_dtype
    mf_vector = tf.cast(user_mf, dtype) * tf.cast(item_mf, dtype)
    preact = user_half + item_half + tf.cast(model.mlp_biases[0], dtype)
    return model.output_logit(mf_vector, model.mlp_tower(preact))


def split_logits(model: NeuMF, user_rows: tf.Tensor, user_index: tf.Tensor,
                 item_rows: tf.Tensor, item_index: tf.Tensor) -> tf.Tensor:
    """Float32 logits [batch] from each side's rows (distinct or whole table) and per-example indices.

    user_rows[user_index] are the batch's user embeddings (likewise items). Each side's half of
    the first layer is computed once per row of `*_rows`, then gathered per example.
    """
    user_kernel, item_kernel = first_layer_halves(model)
    user_half = tf.gather(half_activation(model, user_rows, user_kernel), user_index)
    item_half = tf.gather(half_activation(model, item_rows, item_kernel), item_index)
    mf = model.mf_dim
    user_mf = tf.gather(user_rows[:, :mf], user_index)
    item_mf = tf.gather(item_rows[:, :mf], item_index)
    return logits_from_halves(model, user_mf, item_mf, user_half, item_half)
