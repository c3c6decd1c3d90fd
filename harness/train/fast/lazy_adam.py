"""Adam on embedding rows: exact lazy (replaying skipped steps), MLPerf's Lazy Adam, and dense
Adam fed from the distinct rows' gradient (`apply_dense_adam_from_rows`, the default's table update).

Why: dense Adam rewrites every row of both embedding tables every step (docs/reference-facts.md §4: about
0.9 GB of memory traffic per step on ml-20m), although a batch of 98,304 examples touches only
a third of the 138,493 users. A row that a batch does not touch has a zero gradient, and dense
Adam still moves it deterministically:

    m <- m + (0 - m) * (1 - beta1)             (i.e. beta1 * m)
    v <- v + (0 - v) * (1 - beta2)             (i.e. beta2 * v)
    w <- w - alpha(s) * m / (sqrt(v) + epsilon),  alpha(s) = lr * sqrt(1 - beta2^s) / (1 - beta1^s)

`lazy_exact` keeps, per row, the step it was last brought up to date, and when a row is next
touched (or before an eval: `replay_sorted` over every row) replays its k skipped steps with
exactly these operations, in the same order and float32 arithmetic as TensorFlow's
`ResourceApplyAdam` kernels (CPU and XLA), before computing the forward pass with it and
applying the step's real gradient. Epsilon makes the weight's path a sum with no closed form
(sum_j alpha(s_j) b1^j m / (sqrt(b2^j v) + eps)), so it is replayed step by step; the result
equals dense Adam to float tolerance (differences come only from `pow` in the bias correction
being evaluated by a different kernel). tests/train/test_fast_lazy_adam.py compares every variable
with the dense-Adam Trainer after many steps of random sparse batches.

How the replay stays cheap: the rows to bring up to date are sorted by their number of skipped
steps (descending) and processed in blocks of `block_rows` contiguous rows; each block loops only
as many steps as its own first (largest) row needs, masking the rows that are done. Sorted
blocks hold rows with similar counts, so the masked waste is small, and a block of a few hundred
rows stays in cache across its loop, unlike dense Adam, which streams the whole table from
memory every step. Everything is XLA-compilable (static shapes, while loops).

`lazy_adam` (MLPerf's allowed Lazy Adam) updates the touched rows with the step's global bias
correction and leaves untouched rows' moments alone: faster, but a different optimizer (its
results differ from dense Adam); only ever an explicit, logged choice.
"""
from __future__ import annotations

import tensorflow as tf

from harness.train.fast.split_mlp import dense_from_rows
from reference.optimizer import AdamConfig, bias_corrections

BLOCK_ROWS = 256  # rows per replay block: 256 x 192 floats x 3 arrays fit in L2 cache


def step_size(config: AdamConfig, step: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """alpha(step) = lr * sqrt(1 - beta2^t) / (1 - beta1^t), computed as the Adam kernels do.

    Same float32 powers as `reference.optimizer.bias_corrections` (what the dense path feeds
    `ResourceApplyAdam`), same expression as the kernel; `step` may be a tensor of steps.
    """
    beta1_power, beta2_power = bias_corrections(config, step)
    one = tf.constant(1.0, dtype)
    lr = tf.constant(config.learning_rate, dtype)
    return lr * tf.sqrt(one - tf.cast(beta2_power, dtype)) / (one - tf.cast(beta1_power, dtype))


def adam_rows(w: tf.Tensor, m: tf.Tensor, v: tf.Tensor, grad: tf.Tensor, config: AdamConfig,
              alpha: tf.Tensor, grad_square: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One Adam step on rows, with `ResourceApplyAdam`'s expressions (CPU and XLA kernels alike).

    `grad_square`, if given, must be tf.square of a tensor equal to `grad` (see
    `apply_dense_adam_from_rows`).
    """
    dtype = w.dtype
    one = tf.constant(1.0, dtype)
    grad_square = tf.square(grad) if grad_square is None else grad_square
    m = m + (grad - m) * (one - tf.constant(config.beta1, dtype))
    v = v + (grad_square - v) * (one - tf.constant(config.beta2, dtype))
    w = w - m * alpha / (tf.sqrt(v) + tf.constant(config.epsilon, dtype))
    return w, m, v


def apply_dense_adam_from_rows(var: tf.Variable, m: tf.Variable, v: tf.Variable, row_grad: tf.Tensor,
                               slots: tf.Tensor, config: AdamConfig, alpha: tf.Tensor) -> None:
    """Dense Adam on a whole table whose gradient is `row_grad` on the batch's distinct rows, zero elsewhere.

    The same update as `ResourceApplyAdam` fed `dense_from_rows(row_grad, slots)`, the same
    expressions in the same order, equal to a few ulp (XLA may round the fused multiply-add of
    v's update differently in a different loop; tests/train/test_fast_lazy_adam.py), with less
    memory traffic. XLA:CPU updates var, m and v in
    three passes over the table (no multi-output fusion), and given one table-sized gradient it
    writes that gradient out once and reads it twice. Here the m pass and the v pass each gather
    the gradient from the compact rows themselves, so no table-sized gradient is written: on
    ml-20m's user table, 106 MB written and 212 MB read less per step. The two gathers are
    written differently (a zero row appended; a mask), because XLA merges identical expressions
    into one tensor, which would bring the table-sized gradient back.
    """
    with tf.name_scope("dense_adam"):   # the op profile counts this scope as optimizer time
        capacity = row_grad.shape[0]
        masked = tf.where((slots < capacity)[:, tf.newaxis], tf.gather(row_grad, tf.minimum(slots, capacity - 1)),
                          tf.zeros([], row_grad.dtype))
        w_new, m_new, v_new = adam_rows(var, m, v, dense_from_rows(row_grad, slots), config, alpha,
                                        grad_square=tf.square(masked))
        m.assign(m_new)
        v.assign(v_new)
        var.assign(w_new)


def sort_by_skipped(rows: tf.Tensor, skipped: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(order, inverse): rows[order] has `skipped` descending; inverse[order[i]] == i."""
    order = tf.argsort(skipped, direction="DESCENDING", stable=True)
    inverse = tf.scatter_nd(order[:, tf.newaxis], tf.range(tf.shape(order)[0], dtype=order.dtype),
                            tf.shape(order))
    return order, inverse


def replay_sorted(w: tf.Tensor, m: tf.Tensor, v: tf.Tensor, first_step: tf.Tensor,
                  skipped: tf.Tensor, config: AdamConfig,
                  block_rows: int = BLOCK_ROWS) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Apply `skipped[i]` zero-gradient Adam steps, numbered first_step[i], first_step[i]+1, ..., to row i.

    Args:
        w, m, v: [n, d] rows of a table and its two moments (float32).
        first_step: int64 [n], the first skipped step of each row (its last update + 1).
        skipped: int [n], steps to replay per row, sorted descending (see `sort_by_skipped`).
        block_rows: rows per block; n need not be a multiple (the tail is padded).
    Returns:
        The rows and moments after the replay.
    """
    n = w.shape[0]
    dim = w.shape[1]
    blocks = max(1, -(-n // block_rows))
    padded = blocks * block_rows
    skipped = tf.cast(skipped, tf.int64)
    if padded != n:
        extra = padded - n
        w, m, v = (tf.pad(x, [[0, extra], [0, 0]]) for x in (w, m, v))
        first_step = tf.pad(first_step, [[0, extra]])
        skipped = tf.pad(skipped, [[0, extra]])
    one = tf.constant(1.0, w.dtype)
    keep1 = one - tf.constant(config.beta1, w.dtype)
    keep2 = one - tf.constant(config.beta2, w.dtype)
    eps = tf.constant(config.epsilon, w.dtype)

    def block_cond(b, w, m, v):
        start = tf.minimum(b * block_rows, padded - 1)
        return tf.logical_and(b < blocks, skipped[start] > 0)

    def block_body(b, w, m, v):
        start = b * block_rows
        k = tf.slice(skipped, [start], [block_rows])
        first = tf.slice(first_step, [start], [block_rows])
        wb, mb, vb = (tf.slice(x, [start, 0], [block_rows, dim]) for x in (w, m, v))

        def step_body(j, wb, mb, vb):
            active = (j < k)[:, tf.newaxis]
            alpha = step_size(config, first + j, w.dtype)[:, tf.newaxis]
            m2 = mb + (-mb) * keep1
            v2 = vb + (-vb) * keep2
            w2 = wb - m2 * alpha / (tf.sqrt(v2) + eps)
            return j + 1, tf.where(active, w2, wb), tf.where(active, m2, mb), tf.where(active, v2, vb)

        _, wb, mb, vb = tf.while_loop(lambda j, *_: j < k[0], step_body,
                                      (tf.constant(0, tf.int64), wb, mb, vb))
        w, m, v = (tf.tensor_scatter_nd_update(x, _block_rows(start, block_rows), xb)
                   for x, xb in ((w, wb), (m, mb), (v, vb)))
        return b + 1, w, m, v

    _, w, m, v = tf.while_loop(block_cond, block_body, (tf.constant(0), w, m, v))
    return w[:n], m[:n], v[:n]


def write_rows(table: tf.Variable, m: tf.Variable, v: tf.Variable, rows: tf.Tensor,
               values: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> None:
    """Write (w, m, v) rows [n, d] back to the table and its moments at row ids `rows` [n]."""
    index = rows[:, tf.newaxis]                                            # [n, 1]
    for var, value in zip((table, m, v), values):
        var.scatter_nd_update(index, value)


def catch_up_table(table: tf.Variable, m: tf.Variable, v: tf.Variable, clock: tf.Variable,
                   step: tf.Tensor, config: AdamConfig) -> None:
    """Replay every row of a table that is behind `step` up to it; then every row's clock is `step`."""
    last = tf.minimum(tf.convert_to_tensor(clock), step)                   # [rows] last step applied
    skipped = step - last                                                  # [rows]
    order, _ = sort_by_skipped(tf.range(tf.shape(last)[0]), skipped)       # [rows] most skipped first
    w, m_rows, v_rows = (tf.gather(x, order) for x in (table, m, v))       # [rows, d] each
    values = replay_sorted(w, m_rows, v_rows, tf.gather(last, order) + 1, tf.gather(skipped, order), config)
    write_rows(table, m, v, order, values)
    clock.assign(tf.fill(tf.shape(clock), step))


def _block_rows(start: tf.Tensor, block_rows: int) -> tf.Tensor:
    """Row indices [block_rows, 1] of a contiguous block (XLA turns the scatter into an in-place update)."""
    return (start + tf.range(block_rows))[:, tf.newaxis]
