"""NeuMF's first MLP layer split into its user half and item half, and per-batch distinct rows.

The first hidden layer multiplies concat(user_mlp, item_mlp) by a kernel [2h, layers[1]], which
is the sum of two products: user_mlp @ kernel[:h] + item_mlp @ kernel[h:]. The user product
depends on the user only, the item product on the item only, so each can be computed once per
distinct user / item and then gathered per example. That is where most of NeuMF's arithmetic
goes (about 60% of the forward multiply-adds, docs/reference-facts.md §4), and it is what lets
eval pass the naive ceiling of "0.21 MFLOP per candidate pair":
  * eval: once per user of the batch and once per item of the catalogue, instead of 1,000 times;
  * training: once per distinct user / item of a batch (for a side whose whole table is smaller
    than the batch, once per row of the table, which needs no deduplication at all).

Arithmetic: mathematically identical to `NeuMF.__call__`; in floating point the first layer's
sum runs in a different order (two products of length h added, instead of one of length 2h),
so logits agree to float tolerance, not bit for bit (tests/train/test_fast_eval.py measures how far).

Distinct rows need a static size under XLA. `distinct_rows` uses a capacity fixed at trace time
and the caller checks the true count (`distinct_count`) against it, falling back to a full-size
variant when a batch has more distinct rows than planned: the result never depends on the plan,
only the speed does (`harness.train.fast.choice.SidePlan`, planned without TensorFlow).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import tensorflow as tf

from harness.train.fast.choice import ALL_ROWS, SidePlan
from reference.model import NeuMF

# How the elementwise parts around the products are run: `inline` (inside whatever compiles the
# caller), or as XLA programs of their own when the products run as TensorFlow ops (bfloat16 on a
# CPU, harness.train.fast.choice): a Part wraps a function's forward and its gradient alike.
Part = Callable[[Callable], Callable]


def inline(fn: Callable) -> Callable:
    """The Part that leaves a function as it is."""
    return fn


def xla_part(fn: Callable) -> Callable:
    """The Part that compiles a function as an XLA program of its own."""
    return tf.function(fn, jit_compile=True)


def part_for(tf_matmuls: bool) -> Part:
    """`xla_part` when the products run as TensorFlow ops (FastPaths.tf_matmuls), else `inline`."""
    return xla_part if tf_matmuls else inline


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


class RowBlocks(NamedTuple):
    """Embedding rows as their two column blocks: the GMF part [n, mf_dim] and the MLP part [n, width - mf_dim].

    Why: the training step differentiates with respect to these blocks (harness.train.fast.fused_step), so a
    row's gradient is the concatenation of the blocks' gradients. Slicing one [n, width] tensor
    instead gives each slice a zero-padded, full-width gradient, which XLA writes out and adds.
    """

    mf: tf.Tensor
    mlp: tf.Tensor


def row_blocks(model: NeuMF, rows: tf.Tensor | RowBlocks) -> RowBlocks:
    """`rows` as RowBlocks (sliced by columns if given as one [n, width] tensor)."""
    if isinstance(rows, RowBlocks):
        return rows
    return RowBlocks(rows[:, :model.mf_dim], rows[:, model.mf_dim:])


def joined_rows(rows: tf.Tensor | RowBlocks) -> tf.Tensor:
    """`rows` as one [n, width] tensor (the blocks concatenated if given as RowBlocks)."""
    return tf.concat(list(rows), axis=1) if isinstance(rows, RowBlocks) else rows


def half_activation(model: NeuMF, rows: tf.Tensor | RowBlocks, kernel_half: tf.Tensor) -> tf.Tensor:
    """[n, layers[1]]: the MLP part of embedding rows [n, width] times one half of the kernel."""
    mlp = tf.cast(row_blocks(model, rows).mlp, model.compute_dtype)
    return tf.matmul(mlp, kernel_half)


def first_layer_activation(user_half: tf.Tensor, user_index: tf.Tensor, item_half: tf.Tensor,
                           item_index: tf.Tensor, bias: tf.Tensor, part: Part = inline) -> tf.Tensor:
    """[batch, layers[1]]: ReLU(user_half[user_index] + item_half[item_index] + bias), one pass.

    Same values as gathering each half per example, adding the bias and applying ReLU (the
    same additions in the same order), with a hand-written gradient, because of how XLA:CPU
    compiles the autodiff version. The per-example tensors here are the largest of a training
    step ([98,304, 256] floats, 100 MB each on ml-20m), and that step is memory-bound outside
    its matrix products. Autodiff let XLA write both gathered halves out (200 MB), read them
    back for the ReLU, and read them a third time in the backward pass to recompute the ReLU's
    mask. Here:
      * the forward pass is one fused loop (gathers, add, ReLU) writing only the activation: it
        sits inside a conditional whose two branches are the same computation, which XLA cannot
        merge with the consumers outside it, so the gathered halves never reach memory;
      * the backward pass takes the ReLU's mask from that stored activation (a > 0 exactly
        where the pre-activation was > 0), so it reads 2 per-example tensors instead of 4;
      * the bias gradient is summed over the item half's gradient rows (one per item of the
        batch) instead of over every example: the same sum, grouped differently, so it agrees
        to float rounding only.
    The distinct-row gradients are the segment sums that autodiff of the gathers would produce,
    summed in float32 whatever the compute dtype (a bfloat16 sum over a user's examples would
    round at every addition; for float32 the casts are no-ops). `part` runs the forward pass and
    the gradient (see `Part`).
    """
    num_users, num_items = user_half.shape[0], item_half.shape[0]

    def forward(users: tf.Tensor, items: tf.Tensor, b: tf.Tensor, user_index: tf.Tensor,
                item_index: tf.Tensor) -> tf.Tensor:
        def activation() -> tf.Tensor:
            return tf.nn.relu(tf.gather(users, user_index) + tf.gather(items, item_index) + b)

        # Both branches compute the same thing, so the predicate cannot change the result; it
        # only has to be unknown at compile time to keep the conditional (a fusion boundary).
        return tf.cond(tf.reduce_min(user_index) >= 0, activation, activation)

    def backward(upstream: tf.Tensor, out: tf.Tensor, user_index: tf.Tensor, item_index: tf.Tensor):
        preact_grad = tf.cast(tf.where(out > 0, upstream, tf.zeros_like(upstream)), tf.float32)
        item_grad = tf.math.unsorted_segment_sum(preact_grad, item_index, num_items)
        user_grad = tf.math.unsorted_segment_sum(preact_grad, user_index, num_users)
        return (tf.cast(user_grad, out.dtype), tf.cast(item_grad, out.dtype),
                tf.cast(tf.reduce_sum(item_grad, axis=0), out.dtype))

    @tf.custom_gradient
    def activation(users: tf.Tensor, items: tf.Tensor, b: tf.Tensor):
        out = part(forward)(users, items, b, user_index, item_index)

        def gradient(upstream: tf.Tensor):
            return part(backward)(upstream, out, user_index, item_index)

        return out, gradient

    return activation(user_half, item_half, bias)


def gmf_vector(user_mf: tf.Tensor, user_index: tf.Tensor, item_mf: tf.Tensor, item_index: tf.Tensor,
               dtype: tf.DType, part: Part = inline) -> tf.Tensor:
    """[batch, mf_dim] in `dtype`: user_mf[user_index] * item_mf[item_index], the GMF half of NeuMF.

    A hand-written gradient for the same reason as `first_layer_activation`'s: its segment sums
    run in float32, and `part` can compile forward and gradient as programs of their own (as
    TensorFlow ops, its bfloat16 forward and backward took 3.1-3.8x XLA's time at batch 98,304 on
    the AVX2 AMD EPYC of docs/performance.md). The gradients are those of autodiff to float rounding.
    """
    num_users, num_items = user_mf.shape[0], item_mf.shape[0]

    def forward(users: tf.Tensor, items: tf.Tensor, user_index: tf.Tensor, item_index: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.gather(users, user_index), dtype) * tf.cast(tf.gather(items, item_index), dtype)

    def backward(upstream: tf.Tensor, users: tf.Tensor, items: tf.Tensor, user_index: tf.Tensor,
                 item_index: tf.Tensor):
        wide = tf.cast(upstream, tf.float32)
        user_rows = tf.cast(tf.cast(tf.gather(users, user_index), dtype), tf.float32)
        item_rows = tf.cast(tf.cast(tf.gather(items, item_index), dtype), tf.float32)
        return (tf.cast(tf.math.unsorted_segment_sum(wide * item_rows, user_index, num_users), users.dtype),
                tf.cast(tf.math.unsorted_segment_sum(wide * user_rows, item_index, num_items), items.dtype))

    @tf.custom_gradient
    def product(users: tf.Tensor, items: tf.Tensor):
        def gradient(upstream: tf.Tensor):
            return part(backward)(upstream, users, items, user_index, item_index)

        return part(forward)(users, items, user_index, item_index), gradient

    return product(user_mf, item_mf)


def split_logits(model: NeuMF, user_rows: tf.Tensor | RowBlocks, user_index: tf.Tensor,
                 item_rows: tf.Tensor | RowBlocks, item_index: tf.Tensor, part: Part = inline) -> tf.Tensor:
    """Float32 logits [batch] from each side's rows (distinct or whole table) and per-example indices.

    user_rows[user_index] are the batch's user embeddings (likewise items), as one tensor or as
    RowBlocks. Each side's half of the first layer is computed once per row of `*_rows`, then
    gathered per example inside `first_layer_activation`; the rest is `NeuMF.__call__` after
    its first layer's ReLU. `part` runs the gathers and elementwise work around the products
    (see `Part`); the products themselves run wherever the caller does.
    """
    dtype = model.compute_dtype
    users, items = row_blocks(model, user_rows), row_blocks(model, item_rows)
    user_kernel, item_kernel = first_layer_halves(model)
    hidden = first_layer_activation(half_activation(model, users, user_kernel), user_index,
                                    half_activation(model, items, item_kernel), item_index,
                                    tf.cast(model.mlp_biases[0], dtype), part)
    mf_vector = gmf_vector(users.mf, user_index, items.mf, item_index, dtype, part)
    return model.output_logit(mf_vector, model.upper_layers(hidden))


def split_logits_from_tables(model: NeuMF, users: tf.Tensor, items: tf.Tensor,
                             plans: tuple[SidePlan, SidePlan], part: Part = inline) -> tf.Tensor:
    """`split_logits` reading the model's tables per side's plan (whole table, or the batch's distinct
    rows), so that gradients flow to the table variables (the distributed step)."""
    tensors = []
    for ids, table, plan in ((users, model.embedding_user, plans[0]), (items, model.embedding_item, plans[1])):
        if plan.mode == ALL_ROWS:
            tensors += [tf.convert_to_tensor(table), ids]
        else:
            rows, index = distinct_rows(ids, plan.num_rows, plan.capacity)
            tensors += [tf.gather(table, rows), index]
    return split_logits(model, *tensors, part=part)
