"""The fused training step: gradient and update of a step as one XLA program (one replica with XLA).

Why: on one device, compiling the whole step lets XLA fuse the elementwise work of the forward
pass, the backward pass and Adam, and lets the step differentiate with respect to the rows a
batch reads instead of whole tables. A table read through the batch's distinct rows gets its
gradient over those rows only, and dense Adam's m and v passes each gather it from those rows
(`lazy_adam.apply_dense_adam_from_rows`) instead of reading a zero-filled, table-sized gradient.
It is also where the exact lazy Adam runs (`optimizer_impl="lazy_exact"`): a table row is
updated only when a batch touches it, after replaying the zero-gradient steps it skipped, and
every row is brought up to date (`catch_up`) before each eval. `choice.fused_step_applies`
decides where it runs (not with an L2 penalty on the tables, whose gradient is on every row).

Exact: tests/train/test_fast_lazy_adam.py trains the same batches here and on the plain reference
path and compares every variable and both Adam moments: the default step and its lazy variant
after the runner's warm-up (test_split_fused_step_after_runner_warm_up_equals_reference),
unordered batches, the model's own forward pass (test_lazy_exact_equals_reference_dense_adam), a
capacity plan far too small (test_too_small_capacity_plan_falls_back_exactly);
tests/train/test_fast_loss_scale.py runs it in float16.

bfloat16 on a CPU (`paths.tf_matmuls`; harness.train.fast.choice says why): the step is not one XLA
program but three parts, the rows read and the update each compiled by XLA and the forward and
backward pass between them run as TensorFlow ops, whose oneDNN kernels use the CPU's bf16
instructions where XLA widens bf16 products to fp32; the gathers and elementwise work around the
products are XLA programs of their own too (split_mlp.Part), forward and gradient (as TensorFlow
ops the first layer's activation took 2.4-2.7x XLA's time, and the split step ran at 0.72x the
all-XLA step in fp32 instead of 0.94-0.98x). tests/train/test_bf16.py checks it against the plain path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import tensorflow as tf

from harness.train.fast import lazy_adam
from harness.train.fast.capacity import SIDES, DistinctRowCapacity, Plans
from harness.train.fast.choice import ALL_ROWS, LAZY_EXACT, FastPaths, SidePlan, lazy_table
from harness.train.fast.loss_scale import DynamicLossScale
from harness.train.fast.split_mlp import (RowBlocks, distinct_rows_and_slots, joined_rows, part_for, row_blocks,
                                          split_logits)
from harness.train.state import TrainState, summed_loss
from reference.model import NeuMF
from reference.optimizer import apply_adam, bias_corrections


@dataclass(frozen=True)
class _Side:
    """One embedding table as the fused step sees it (users or items)."""

    name: str
    table: tf.Variable
    m: tf.Variable
    v: tf.Variable
    clock: tf.Variable | None       # lazy_exact: the step each row was last brought up to


class _Read(NamedTuple):
    """What a step read of one side's table, and so how that side is updated.

    A NamedTuple (not a dataclass) so that a compiled part of the step can return it (tf.nest).
    """

    rows: tf.Tensor                  # [n, width]: the whole table, its distinct rows, or lazy rows (replayed)
    index: tf.Tensor                 # [batch]: each example's position in `rows`
    slots: tf.Tensor | None = None   # dense Adam from distinct rows: each table row's slot (split_mlp)
    lazy: tuple[tf.Tensor, tf.Tensor, tf.Tensor] | None = None   # (row ids [n], m rows, v rows [n, width])


class _ModelOnRows:
    """The model with its two tables replaced by rows a step read, for `NeuMF.__call__`: the model's
    own forward pass, with ids that index those rows instead of the tables."""

    def __init__(self, model: NeuMF, user_rows: tf.Tensor, item_rows: tf.Tensor) -> None:
        self._model = model
        self.embedding_user, self.embedding_item = user_rows, item_rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class FusedStep:
    """A Trainer's fused step, compiled once per capacity plan, its training loop and lazy Adam's catch-up.

    Build inside the strategy's scope (lazy_exact keeps a clock per table row).
    """

    def __init__(self, state: TrainState, paths: FastPaths, capacity: DistinctRowCapacity) -> None:
        self.state, self.paths, self.capacity = state, paths, capacity
        self.row_clocks: dict[str, tf.Variable] = {}
        if paths.optimizer_impl == LAZY_EXACT:
            for name, table in zip(SIDES, (state.model.embedding_user, state.model.embedding_item)):
                self.row_clocks[name] = tf.Variable(tf.zeros([table.shape[0]], tf.int64), trainable=False,
                                                    name=f"{name}_row_clock")
        self._steps: dict[tuple, Any] = {}    # (capacities, update) -> compiled step
        self._loops: dict[tuple, Any] = {}    # learnt capacities -> compiled training loop
        self._catch_up = tf.function(self._catch_up_impl, jit_compile=True) if self.row_clocks else None

    def lazy(self, plan: SidePlan) -> bool:
        """Whether a side with this plan is updated lazily (see choice.lazy_table)."""
        return lazy_table(plan, self.paths.optimizer_impl)

    def lazy_tables(self, plans: Plans) -> list[str]:
        return [name for name, plan in zip(SIDES, plans) if self.lazy(plan)]

    def compiled(self, plans: Plans, update: bool = True) -> Any:
        """The step for these plans as a compiled callable(users, items, labels, valid).

        `update=False` (profiling only) computes the same forward and backward pass but no replay
        and no Adam, and returns the loss and the gradients' sums.
        """
        key = (plans[0].capacity, plans[1].capacity, update)
        if key not in self._steps:
            def step(users, items, labels, valid):
                # A plain four-argument signature (not functools.partial), so the compiled step's
                # optimized HLO can be asked for (harness.measure.op_profile).
                return self._step(users, items, labels, valid, plans=plans, update=update)

            self._steps[key] = tf.function(step, jit_compile=not self.paths.tf_matmuls)
        return self._steps[key]

    def _part(self, fn: Callable) -> Callable:
        """`fn` as an XLA program of its own when the step is split around its products (tf_matmuls),
        else `fn` itself, inside the one XLA program of the step (a split_mlp.Part)."""
        return part_for(self.paths.tf_matmuls)(fn)

    # -- the training loop ------------------------------------------------------------------------
    def train_steps(self, iterator, num_steps) -> tf.Tensor:
        """`num_steps` steps from `iterator` in one compiled call (the summed loss), then learn capacities."""
        key = tuple(self.capacity.learnt)
        if key not in self._loops:
            self._loops[key] = tf.function(self._loop)
        total = self._loops[key](iterator, num_steps)
        self.capacity.learn()
        return total

    def _loop(self, iterator, num_steps):
        self._sync_row_clocks()
        batch = self.capacity.batch = int(iterator.element_spec[0].shape[0])
        plans = self.capacity.plans(batch, full=False)
        step = self.compiled(plans)
        fallback = any(plan.needs_fallback for plan in plans)
        full_step = self.compiled(self.capacity.plans(batch, full=True)) if fallback else None
        total = tf.constant(0.0)
        for _ in tf.range(num_steps):
            users, items, labels, valid = next(iterator)
            fits = self.capacity.observe((users, items), valid, plans)
            if fallback:
                loss = tf.cond(fits, lambda: step(users, items, labels, valid),
                               lambda: full_step(users, items, labels, valid))
            else:
                loss = step(users, items, labels, valid)
            total += loss
        return total

    # -- one step -----------------------------------------------------------------------------------
    def _sides(self) -> list[_Side]:
        model, m, v = self.state.model, self.state.m, self.state.v
        return [_Side("user", model.embedding_user, m[0], v[0], self.row_clocks.get("user")),
                _Side("item", model.embedding_item, m[1], v[1], self.row_clocks.get("item"))]

    def _step(self, users, items, labels, valid, plans: Plans, update: bool = True):
        """One training step: rows read, forward and backward pass, Adam (dense or lazy)."""
        state = self.state
        t = state.step + 1
        sides = self._sides()

        def read(users, items, t):
            return [self._read(side, ids, plan, t, update) for side, ids, plan in zip(sides, (users, items), plans)]

        reads = self._part(read)(users, items, t)
        loss, grads = self._gradients(reads, labels, valid)
        if not update:
            return tf.stack([loss] + [tf.reduce_sum(g) for g in grads])
        finite = tf.constant(True)
        if state.loss_scale:
            grads = state.loss_scale.unscale(grads)
            finite = DynamicLossScale.all_finite(grads)

        def update_all(t, reads, grads):
            row_grads = [tf.concat(grads[2 * i: 2 * i + 2], axis=1) for i in range(len(sides))]   # [n, width]
            self._apply(t, sides, reads, row_grads, grads[2 * len(sides):])
            return tf.constant(True)

        def apply():
            return self._part(update_all)(t, reads, grads)

        if state.loss_scale:
            tf.cond(finite, apply, lambda: tf.constant(False))
            state.loss_scale.update(finite)
        else:
            apply()
        return loss

    def _read(self, side: _Side, ids: tf.Tensor, plan: SidePlan, t: tf.Tensor, update: bool) -> _Read:
        """The rows the forward pass reads of one side: whole table, distinct rows, or lazy rows
        (lazy_exact: replayed up to step t - 1 first)."""
        if plan.mode == ALL_ROWS:
            return _Read(tf.convert_to_tensor(side.table), ids)
        rows, index, slots = distinct_rows_and_slots(ids, plan.num_rows, plan.capacity)   # [cap], [batch], [rows]
        if not self.lazy(plan):
            return _Read(tf.gather(side.table, rows), index, slots=slots)
        replay = side.clock is not None and update
        if replay:                                               # most skipped steps first
            last = tf.gather(side.clock, rows)                   # [cap]
            order, inverse = lazy_adam.sort_by_skipped(rows, t - 1 - last)
            rows, index, last = tf.gather(rows, order), tf.gather(inverse, index), tf.gather(last, order)
        w, m, v = (tf.gather(x, rows) for x in (side.table, side.m, side.v))   # [cap, width] each
        if replay:
            w, m, v = lazy_adam.replay_sorted(w, m, v, last + 1, t - 1 - last, self.state.adam)
        return _Read(w, index, lazy=(rows, m, v))

    def _gradients(self, reads: list[_Read], labels, valid) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """(loss, gradients): per side the rows' two column blocks (split_mlp.RowBlocks), then every
        other variable. Differentiating the blocks makes a row's gradient their concatenation,
        rather than two zero-padded, full-width blocks that XLA writes out and adds."""
        state, model = self.state, self.state.model
        with tf.GradientTape() as tape:
            row_tensors, blocks = [], []
            for read in reads:
                rows_read = row_blocks(model, read.rows)   # sliced inside the tape, then watched
                for block in rows_read:
                    tape.watch(block)
                row_tensors += list(rows_read)
                blocks.append(rows_read)
            logits = self._logits(blocks, [read.index for read in reads])                       # [batch]
            loss = summed_loss(logits, labels, valid, tf.maximum(tf.reduce_sum(valid), 1.0))
            loss += model.regularization_loss()
            scaled = state.scaled(loss)
        grads = tape.gradient(scaled, row_tensors + state.variables[2:])
        return loss, [tf.convert_to_tensor(g) for g in grads]

    def _logits(self, blocks: list[RowBlocks], indices: list[tf.Tensor]) -> tf.Tensor:
        model = self.state.model
        if self.paths.split_first_layer:
            return split_logits(model, blocks[0], indices[0], blocks[1], indices[1], part=self._part)
        on_rows = _ModelOnRows(model, joined_rows(blocks[0]), joined_rows(blocks[1]))
        return NeuMF.__call__(on_rows, indices[0], indices[1])

    def _apply(self, t: tf.Tensor, sides: list[_Side], reads: list[_Read], row_grads: list[tf.Tensor],
               dense_grads: list[tf.Tensor]) -> None:
        """Adam at step t: dense on the layers, and per side lazy, dense from the distinct rows, or dense."""
        state, adam = self.state, self.state.adam
        state.step.assign(t)
        beta1_power, beta2_power = bias_corrections(adam, t)
        alpha = lazy_adam.step_size(adam, t)
        for var, m, v, grad in zip(state.variables[2:], state.m[2:], state.v[2:], dense_grads):
            apply_adam(var, m, v, grad, adam, beta1_power, beta2_power)
        for side, read, grad in zip(sides, reads, row_grads):
            if read.lazy is not None:
                rows, m, v = read.lazy
                lazy_adam.write_rows(side.table, side.m, side.v, rows,
                                     lazy_adam.adam_rows(read.rows, m, v, grad, adam, alpha))
                if side.clock is not None:
                    side.clock.scatter_nd_update(rows[:, tf.newaxis], tf.fill(tf.shape(rows), t))
                continue
            if read.slots is not None:   # dense Adam, its gradient read from the distinct rows
                lazy_adam.apply_dense_adam_from_rows(side.table, side.m, side.v, grad, read.slots, adam, alpha)
            else:                        # dense Adam, the gradient of the whole table read (ALL_ROWS)
                apply_adam(side.table, side.m, side.v, grad, adam, beta1_power, beta2_power)
            if side.clock is not None:   # dense Adam just brought every row to step t
                side.clock.assign(tf.fill(tf.shape(side.clock), t))

    # -- lazy Adam's row clocks ------------------------------------------------------------------
    def _sync_row_clocks(self) -> None:
        """After the optimizer state was reset (step 0), every row is at step 0 by definition."""
        if not self.row_clocks:
            return

        def reset():
            self.reset_row_clocks()
            return tf.constant(True)

        tf.cond(tf.equal(self.state.step, 0), reset, lambda: tf.constant(False))

    def reset_row_clocks(self) -> None:
        """Every row at step 0 (with the optimizer state's reset)."""
        for clock in self.row_clocks.values():
            clock.assign(tf.zeros_like(clock))

    def _catch_up_impl(self):
        """Replay every row that is behind the current step up to it (XLA; whole tables)."""
        for side in self._sides():
            if side.clock is not None:
                lazy_adam.catch_up_table(side.table, side.m, side.v, side.clock, self.state.step, self.state.adam)
        return tf.constant(True)

    def catch_up(self) -> None:
        """Bring every lazily updated row to the current step, so the variables equal dense Adam's."""
        if self._catch_up is None:
            return
        if int(self.state.step.numpy()) == 0:
            self.reset_row_clocks()
            return
        self._catch_up()
