"""Compiled training and evaluation steps for NeuMF under any tf.distribute strategy.

Two training paths share the model, the Adam constants and the results (to float tolerance):

* The distributed path (any strategy; used whenever there is more than one replica or XLA is
  off): each replica computes the loss of its slice as sum(loss) / (global valid examples), so
  the all-reduced gradients are exactly the single-device gradients of the global batch;
  gradients are made dense (as the seed does), summed across replicas, and applied once per
  replica through `strategy.extended.update` inside `merge_call`, the pattern the strategies'
  own optimizers use.
* The fused path (one replica with XLA, e.g. the `cpu` profile): gradient and update of a step
  are one XLA program, so elementwise work fuses. A table read through a batch's distinct rows
  gets its gradient over those rows only; dense Adam's m and v passes each gather it from
  those rows (`lazy_adam.apply_dense_adam_from_rows`) instead of reading a zero-filled,
  scattered table-sized gradient. An L2 penalty on the tables (whose gradient is on every row)
  turns the fused path off. It is
  also where the exact lazy Adam can run (`harness.lazy_adam`): rows of an embedding table are
  updated only when a batch touches them, after replaying the zero-gradient steps they
  skipped, and every row is brought up to date (`catch_up`) before each eval. It is exact but,
  on the CPU measured here, slower than dense Adam, so "auto" runs dense
  (`fast_paths.choose_optimizer_impl`).

Both paths compute the first MLP layer split into its user and item halves once per distinct
user / item of a batch, or once per table row when the table is smaller than the batch
(`harness.split_mlp`), unless `split_first_layer=False`. `train_steps` runs many steps per
call, avoiding a Python round trip per step. Eval computes the item half once per catalogue
item and the user half once per user (`harness.fast_eval`), unless `fast_eval=False`, and
returns per-replica sums of hits, NDCG and row weights, reduced with SUM, so sharded eval gives
the single-device HR and NDCG exactly.

float16 compute (mixed_float16) gets dynamic loss scaling (`harness.loss_scale`); bfloat16 and
float32 need none.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from harness.train.fast import choice as fast_paths
from harness.train.fast import lazy_adam
from harness.train.fast.fast_eval import catalogue_parts, eval_sums
from harness.train.fast.loss_scale import DynamicLossScale
from harness.train.fast.choice import ALL_ROWS, SidePlan, capacity_for, plan_side
from harness.train.fast.split_mlp import (distinct_count, distinct_rows, distinct_rows_and_slots, joined_rows,
                               row_blocks, split_logits)
from reference import constants
from reference.metrics import compute_top_k_and_ndcg
from reference.model import NeuMF, per_example_loss
from reference.optimizer import AdamConfig, apply_adam, bias_corrections

SUM = tf.distribute.ReduceOp.SUM
AUTO = fast_paths.AUTO


@dataclass
class EvalSums:
    """Summed eval statistics over all users (padding rows carry weight 0)."""

    hits: float
    ndcg: float
    weight: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.weight if self.weight else 0.0

    @property
    def ndcg_mean(self) -> float:
        return self.ndcg / self.weight if self.weight else 0.0


@dataclass(frozen=True)
class _Side:
    """One embedding table as the fused step sees it (users or items)."""

    name: str
    table: tf.Variable
    m: tf.Variable
    v: tf.Variable
    clock: tf.Variable | None       # lazy_exact: the step each row was last brought up to


class Trainer:
    """Owns the optimizer state and the compiled train/eval functions for one model.

    Args:
        strategy, model, adam: what to train, where, with which Adam constants.
        match_mlperf: mask duplicate eval candidates (closed division).
        xla: compile the per-replica compute with XLA (jit_compile).
        optimizer_impl: "dense" (Adam on every row every step), "lazy_exact" (rows updated when
            touched, skipped steps replayed: dense Adam's results to float tolerance),
            "lazy_adam" (MLPerf's Lazy Adam: a different optimizer, results differ) or "auto"
            (dense; see harness.train.fast.choice). Lazy variants need the fused path (one replica, XLA).
        split_first_layer: compute the first MLP layer per distinct user/item (exact to float
            tolerance); False runs the model's own forward pass.
        fast_eval: eval with the split layer and the sort-free rank (see harness.train.fast.fast_eval);
            False runs `model(users, items)` and the seed's argsort metrics.
        row_frequencies: optional (user, item) relative frequencies among training examples,
            used to plan how many distinct rows a batch holds (speed only; never results).
        loss_scale: "auto" (dynamic for float16 compute, none otherwise), "dynamic" or None.
        loss_scale_growth_interval: finite steps before the loss scale doubles (2,000).
        fused_step: allow the fused path (False forces the distributed path everywhere: the
            plain reference to compare fast paths with).
        user_order: ask for training batches sorted by user (`user_ordered_batches`, fused path
            only): the fused step's per-user gathers and gradient sums then read memory in order.
            The caller's input pipeline does the sorting (harness.train.input_pipeline.order_by_user);
            the batches stay the same, so results differ only by float rounding.
    """

    def __init__(self, strategy: tf.distribute.Strategy, model: NeuMF, adam: AdamConfig,
                 match_mlperf: bool = True, xla: bool = False, optimizer_impl: str = AUTO,
                 split_first_layer: bool = True, fast_eval: bool = True,
                 row_frequencies: Sequence[np.ndarray | None] = (None, None),
                 loss_scale: str | None = AUTO, initial_loss_scale: float = 2.0 ** 15,
                 loss_scale_growth_interval: int = 2000, fused_step: bool = True,
                 user_order: bool = True) -> None:
        self.strategy = strategy
        self.model = model
        self.adam = adam
        self.match_mlperf = match_mlperf
        self.xla = bool(xla)
        self.split_first_layer = split_first_layer
        self.fast_eval = fast_eval
        self.row_frequencies = tuple(row_frequencies)
        self.variables = model.ordered_variables
        regularised = model.mf_regularization != 0.0
        self.fused = fused_step and fast_paths.fused_step_applies(
            self.xla, strategy.num_replicas_in_sync, _is_tpu(strategy), regularised)
        self.user_ordered_batches = self.fused and user_order
        self.optimizer_impl = fast_paths.choose_optimizer_impl(optimizer_impl, self.fused, regularised)
        if loss_scale == AUTO:
            loss_scale = fast_paths.loss_scaling_for("mixed_float16" if model.compute_dtype == tf.float16 else "")
        if loss_scale not in (None, "dynamic"):
            raise ValueError(f"loss_scale must be 'auto', 'dynamic' or None, got {loss_scale!r}")
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_step")
            self.m = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adam_m") for v in self.variables]
            self.v = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adam_v") for v in self.variables]
            self.loss_scale = (DynamicLossScale(initial_loss_scale, loss_scale_growth_interval)
                               if loss_scale else None)
            self.row_clocks: dict[str, tf.Variable] = {}
            if self.optimizer_impl == fast_paths.LAZY_EXACT:
                for name, table in (("user", model.embedding_user), ("item", model.embedding_item)):
                    self.row_clocks[name] = tf.Variable(tf.zeros([table.shape[0]], tf.int64), trainable=False,
                                                        name=f"{name}_row_clock")
        self._jit = functools.partial(tf.function, jit_compile=True) if self.xla else (lambda f: f)
        self._gradients = self._jit(self._gradients_impl)
        self._eval_sums = self._jit(self._eval_sums_impl)
        self._catalogue = self._jit(lambda: catalogue_parts(self.model))
        self._fused_steps: dict[tuple[int, int], tf.types.experimental.GenericFunction] = {}
        self._catch_up_fn = tf.function(self._catch_up_impl, jit_compile=True) if self.row_clocks else None
        # Distinct-row capacities learnt from full batches (sides without row_frequencies).
        self._learnt_capacity: list[int | None] = [None, None]
        with strategy.scope():
            self._seen_distinct = tf.Variable([0, 0], dtype=tf.int32, trainable=False, name="seen_distinct")
        self._train_fns: dict[tuple, tf.types.experimental.GenericFunction] = {}
        self._plans: dict[int, tuple[SidePlan, SidePlan]] = {}
        self._batch: int | None = None
        self.eval_steps = tf.function(self._eval_steps)

    # -- configuration ------------------------------------------------------------------------
    def describe(self) -> dict:
        """What runs, for logs and the throughput report (lazy_tables and capacities once a batch was seen)."""
        plans = self._side_plans(self._batch, full=False) if self._batch else None
        return {"path": "fused" if self.fused else "distributed", "xla": self.xla,
                "optimizer_impl": self.optimizer_impl,
                "lazy_tables": None if plans is None or not self.fused else
                [name for name, plan in zip(("user", "item"), plans) if self._lazy(plan)],
                "side_plans": None if plans is None else
                {name: {"mode": p.mode, "capacity": p.capacity} for name, p in zip(("user", "item"), plans)},
                "split_first_layer": self.split_first_layer,
                "user_ordered_batches": self.user_ordered_batches,
                "fast_eval": self.fast_eval, "loss_scale": "dynamic" if self.loss_scale else None,
                "eval_output_layer": "float32" if self.fast_eval else self.model.compute_dtype.name}

    def _base_plans(self, batch: int) -> tuple[SidePlan, SidePlan]:
        """The capacity plans from the row frequencies (or uniform ids), computed once per batch size."""
        if batch not in self._plans:
            self._plans[batch] = tuple(plan_side(rows, batch, freq) for rows, freq in (
                (self.model.num_users, self.row_frequencies[0]), (self.model.num_items, self.row_frequencies[1])))
        return self._plans[batch]

    def _side_plans(self, batch: int, full: bool) -> tuple[SidePlan, SidePlan]:
        plans = []
        for side, plan in enumerate(self._base_plans(batch)):
            learnt = self._learnt_capacity[side]
            if plan.mode != ALL_ROWS and (full or learnt is not None):
                capacity = plan.full_capacity if full else min(learnt, plan.full_capacity)
                plan = SidePlan(plan.mode, plan.num_rows, capacity, plan.full_capacity)
            plans.append(plan)
        return plans[0], plans[1]

    def _learn_capacity(self) -> None:
        """Tighten (or widen) a side's distinct-row capacity from what full batches really held.

        Without `row_frequencies`, the first plan assumes uniform ids, which overstates the
        distinct users of a real (skewed) batch by 20% or more, and every planned row costs a
        share of the first layer. After a call that saw full batches, the capacity becomes the
        largest count seen plus 8 standard deviations (one recompile, in practice once per run);
        batches above it still run the exact full-size variant.
        """
        batch = self._batch
        if batch is None or all(p.mode == ALL_ROWS or f is not None
                                for p, f in zip(self._base_plans(batch), self.row_frequencies)):
            return
        seen = self._seen_distinct.numpy()
        current = self._side_plans(batch, full=False)
        for side, plan in enumerate(current):
            if plan.mode == ALL_ROWS or self.row_frequencies[side] is not None or seen[side] <= 0:
                continue
            proposed = min(plan.full_capacity, capacity_for(float(seen[side]), batch))
            if proposed < 0.97 * plan.capacity or seen[side] > plan.capacity:
                self._learnt_capacity[side] = proposed

    def train_steps(self, iterator, num_steps) -> tf.Tensor:
        """Run `num_steps` training steps from `iterator` in one compiled call; the summed loss."""
        key = tuple(self._learnt_capacity)
        if key not in self._train_fns:
            self._train_fns[key] = tf.function(self._train_steps_fused if self.fused else self._train_steps)
        total = self._train_fns[key](iterator, num_steps)
        if self.fused:
            self._learn_capacity()
        return total

    # -- shared pieces ------------------------------------------------------------------------
    def _loss(self, logits, labels, valid, count):
        return tf.reduce_sum(per_example_loss(logits, labels) * valid) / count

    def _split_logits_from_variables(self, users, items, plans):
        """Logits with the split first layer, reading the tables (gradients flow to the variables)."""
        tensors = []
        for ids, table, plan in ((users, self.model.embedding_user, plans[0]),
                                 (items, self.model.embedding_item, plans[1])):
            if plan.mode == ALL_ROWS:
                tensors += [tf.convert_to_tensor(table), ids]
            else:
                rows, index = distinct_rows(ids, plan.num_rows, plan.capacity)
                tensors += [tf.gather(table, rows), index]
        return split_logits(self.model, *tensors)

    # -- distributed path ---------------------------------------------------------------------
    def _gradients_impl(self, users, items, labels, valid, global_count):
        batch = users.shape[0]
        with tf.GradientTape() as tape:
            if self.split_first_layer and batch is not None:
                logits = self._split_logits_from_variables(users, items, self._side_plans(batch, full=True))
            else:
                logits = self.model(users, items)
            loss = self._loss(logits, labels, valid, global_count)
            loss += self.model.regularization_loss() / float(self.strategy.num_replicas_in_sync)
            scaled = self.loss_scale.scale_loss(loss) if self.loss_scale else loss
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(scaled, self.variables)]
        return loss, grads

    def _replica_step(self, users, items, labels, valid):
        ctx = tf.distribute.get_replica_context()
        global_count = ctx.all_reduce(SUM, tf.reduce_sum(valid))
        with self._on_replica_device():
            loss, grads = self._gradients(users, items, labels, valid, tf.maximum(global_count, 1.0))
        grads = ctx.all_reduce(SUM, grads)
        finite = tf.constant(True)
        scale_state = ()
        if self.loss_scale:
            grads = self.loss_scale.unscale(grads)
            finite = DynamicLossScale.all_finite(grads)   # the same on every replica (summed grads)
            scale_state = self.loss_scale.next_state(finite)
        next_step = self.step + tf.cast(finite, tf.int64)
        ctx.merge_call(self._apply, args=(grads, next_step, finite, scale_state))
        return loss

    def _apply(self, strategy, grads, next_step, finite, scale_state):
        """Cross-replica update: every argument arrives per replica and is unwrapped per device."""
        extended = strategy.extended

        def assign(var, value):
            return var.assign(value)

        if self.loss_scale:
            extended.update(self.loss_scale.scale, assign, args=(scale_state[0],), group=False)
            extended.update(self.loss_scale.good_steps, assign, args=(scale_state[1],), group=False)
        extended.update(self.step, assign, args=(next_step,), group=False)

        def update(var, m, v, grad, t, ok):
            def apply():
                beta1_power, beta2_power = bias_corrections(self.adam, t)
                return apply_adam(var, m, v, grad, self.adam, beta1_power, beta2_power)
            if self.loss_scale is None:
                return apply()
            return tf.cond(ok, lambda: _as_true(apply()), lambda: tf.constant(False))

        for var, m, v, grad in zip(self.variables, self.m, self.v, grads):
            extended.update(var, update, args=(m, v, grad, next_step, finite), group=False)

    def _train_steps(self, iterator, num_steps):
        total = tf.constant(0.0)
        for _ in tf.range(num_steps):
            users, items, labels, valid = next(iterator)
            per_replica = self.strategy.run(self._replica_step, args=(users, items, labels, valid))
            total += self.strategy.reduce(SUM, per_replica, axis=None)
        return total

    # -- fused path (one replica, XLA) ----------------------------------------------------------
    def _fused_step_for(self, plans: tuple[SidePlan, SidePlan], update: bool = True):
        key = (plans[0].capacity, plans[1].capacity, update)
        if key not in self._fused_steps:
            def step(users, items, labels, valid):
                # A plain four-argument signature (not functools.partial), so the compiled step's
                # optimized HLO can be asked for (harness.measure.op_profile).
                return self._fused_step(users, items, labels, valid, plans=plans, update=update)

            self._fused_steps[key] = tf.function(step, jit_compile=True)
        return self._fused_steps[key]

    def compiled_step(self, batch: int, update: bool = True):
        """The fused step for per-replica `batch` as a callable(users, items, labels, valid).

        For profiling (harness.measure.throughput): `update=False` computes the same forward and
        backward pass (and gradients) but no replay and no Adam, so the optimizer's share of a
        step is the difference. Uses the current capacity plan; batches must fit it.
        """
        if not self.fused:
            raise ValueError("compiled_step needs the fused path (one replica with XLA)")
        return self._fused_step_for(self._side_plans(batch, full=False), update=update)

    def _sides(self) -> list[_Side]:
        model = self.model
        return [_Side("user", model.embedding_user, self.m[0], self.v[0], self.row_clocks.get("user")),
                _Side("item", model.embedding_item, self.m[1], self.v[1], self.row_clocks.get("item"))]

    def _lazy(self, plan: SidePlan) -> bool:
        """Whether this side's table is updated lazily (see fast_paths.lazy_table)."""
        return fast_paths.lazy_table(plan, self.optimizer_impl)

    def _fused_step(self, users, items, labels, valid, plans, update=True):
        """One training step as one XLA program: rows, forward/backward, Adam (dense or lazy).

        `update=False` (profiling only) stops after the gradients and returns their sums.
        """
        model, adam = self.model, self.adam
        t = self.step + 1
        sides = self._sides()
        lazy = {}          # side name -> (row ids, w, m, v) of a lazily updated side
        compact = {}       # side name -> slots: dense Adam, gradient taken over the distinct rows
        tables = []        # per side: the rows the forward pass reads (whole table, distinct or lazy rows)
        indices = []       # per side: each example's position in those rows
        for side, ids, plan in zip(sides, (users, items), plans):
            if plan.mode == ALL_ROWS:
                tables.append(tf.convert_to_tensor(side.table))
                indices.append(ids)
                continue
            rows, index, slots = distinct_rows_and_slots(ids, plan.num_rows, plan.capacity)
            if not self._lazy(plan):
                compact[side.name] = slots
                tables.append(tf.gather(side.table, rows))
                indices.append(index)
                continue
            if side.clock is not None and update:   # lazy_exact: replay the skipped steps first
                last = tf.gather(side.clock, rows)
                order, inverse = lazy_adam.sort_by_skipped(rows, t - 1 - last)
                rows, index, last = tf.gather(rows, order), tf.gather(inverse, index), tf.gather(last, order)
            w, m, v = (tf.gather(x, rows) for x in (side.table, side.m, side.v))
            if side.clock is not None and update:
                w, m, v = lazy_adam.replay_sorted(w, m, v, last + 1, t - 1 - last, adam)
            lazy[side.name] = (rows, w, m, v)
            tables.append(w)
            indices.append(index)
        # Differentiate with respect to the rows read (tensors) for the tables, and with respect to
        # the variables for the rest. A side's rows are watched as their two column blocks
        # (split_mlp.RowBlocks): the rows' gradient is then the blocks' concatenation, rather than
        # two zero-padded, full-width blocks that XLA writes out and adds.
        dense_vars = self.variables[2:]
        with tf.GradientTape() as tape:
            row_tensors = []
            read = []
            for table in tables:
                rows_read = row_blocks(model, table)   # sliced inside the tape, then watched
                for block in rows_read:
                    tape.watch(block)
                row_tensors += list(rows_read)
                read.append(rows_read)
            if self.split_first_layer:
                logits = split_logits(model, read[0], indices[0], read[1], indices[1])
            else:
                users, items = (tf.gather(joined_rows(r), i) for r, i in zip(read, indices))
                logits = _plain_logits(model, users, items)
            loss = self._loss(logits, labels, valid, tf.maximum(tf.reduce_sum(valid), 1.0))
            loss += model.regularization_loss()
            scaled = self.loss_scale.scale_loss(loss) if self.loss_scale else loss
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(scaled, row_tensors + dense_vars)]
        if not update:
            return tf.stack([loss] + [tf.reduce_sum(g) for g in grads])
        finite = tf.constant(True)
        if self.loss_scale:
            grads = self.loss_scale.unscale(grads)
            finite = DynamicLossScale.all_finite(grads)
        row_grads = {side.name: tf.concat(grads[2 * i: 2 * i + 2], axis=1) for i, side in enumerate(sides)}
        dense_grads = grads[2 * len(sides):]
        slots = {id(var): (m, v) for var, m, v in zip(self.variables, self.m, self.v)}

        def apply():
            self.step.assign(t)
            beta1_power, beta2_power = bias_corrections(adam, t)
            alpha = lazy_adam.step_size(adam, t)
            for var, grad in zip(dense_vars, dense_grads):
                m, v = slots[id(var)]
                apply_adam(var, m, v, grad, adam, beta1_power, beta2_power)
            for side in sides:
                if side.name in lazy:
                    rows, w, m, v = lazy[side.name]
                    w, m, v = lazy_adam.adam_rows(w, m, v, row_grads[side.name], adam, alpha)
                    index = rows[:, tf.newaxis]
                    for var, value in ((side.table, w), (side.m, m), (side.v, v)):
                        var.scatter_nd_update(index, value)
                    if side.clock is not None:
                        side.clock.scatter_nd_update(index, tf.fill(tf.shape(rows), t))
                    continue
                if side.name in compact:   # dense Adam, its gradient read from the distinct rows
                    lazy_adam.apply_dense_adam_from_rows(side.table, side.m, side.v, row_grads[side.name],
                                                         compact[side.name], adam, alpha)
                else:                      # dense Adam, the gradient of the whole table read (ALL_ROWS)
                    apply_adam(side.table, side.m, side.v, row_grads[side.name], adam, beta1_power, beta2_power)
                if side.clock is not None:   # dense Adam just brought every row to step t
                    side.clock.assign(tf.fill(tf.shape(side.clock), t))
            return tf.constant(True)

        if self.loss_scale:
            tf.cond(finite, apply, lambda: tf.constant(False))
            self.loss_scale.update(finite)
        else:
            apply()
        return loss

    def _sync_row_clocks(self):
        """After the optimizer state was reset (step 0), every row is at step 0 by definition."""
        if not self.row_clocks:
            return

        def reset():
            for clock in self.row_clocks.values():
                clock.assign(tf.zeros_like(clock))
            return tf.constant(True)

        tf.cond(tf.equal(self.step, 0), reset, lambda: tf.constant(False))

    def _train_steps_fused(self, iterator, num_steps):
        self._sync_row_clocks()
        batch = self._batch = int(iterator.element_spec[0].shape[0])
        plans = self._side_plans(batch, full=False)
        step = self._fused_step_for(plans)
        fallback = any(plan.needs_fallback for plan in plans)
        full_step = self._fused_step_for(self._side_plans(batch, full=True)) if fallback else None
        total = tf.constant(0.0)
        for _ in tf.range(num_steps):
            users, items, labels, valid = next(iterator)
            fits = self._observe_distinct((users, items), valid, plans)
            if fallback:
                loss = tf.cond(fits, lambda: step(users, items, labels, valid),
                               lambda: full_step(users, items, labels, valid))
            else:
                loss = step(users, items, labels, valid)
            total += loss
        return total

    def _observe_distinct(self, ids_by_side, valid, plans) -> tf.Tensor:
        """Record the distinct rows of full batches (for `_learn_capacity`); True if the plan fits."""
        fits = tf.constant(True)
        full_batch = tf.equal(tf.reduce_sum(valid), float(valid.shape[0]))
        for side, (ids, plan) in enumerate(zip(ids_by_side, plans)):
            if plan.mode == ALL_ROWS:
                continue
            count = distinct_count(ids, plan.num_rows)
            observed = tf.where(full_batch, count, 0)
            self._seen_distinct[side].assign(tf.maximum(self._seen_distinct[side], observed))
            fits = tf.logical_and(fits, count <= plan.capacity)
        return fits

    # -- lazy Adam catch-up ----------------------------------------------------------------------
    def _catch_up_impl(self):
        """Replay every row that is behind the current step up to it (XLA; whole tables)."""
        t = self.step
        for side in self._sides():
            if side.clock is None:
                continue
            last = tf.minimum(tf.convert_to_tensor(side.clock), t)
            skipped = t - last
            order, _ = lazy_adam.sort_by_skipped(tf.range(tf.shape(last)[0]), skipped)
            w, m, v = (tf.gather(x, order) for x in (side.table, side.m, side.v))
            w, m, v = lazy_adam.replay_sorted(w, m, v, tf.gather(last, order) + 1,
                                              tf.gather(skipped, order), self.adam)
            index = order[:, tf.newaxis]
            for var, value in ((side.table, w), (side.m, m), (side.v, v)):
                var.scatter_nd_update(index, value)
            side.clock.assign(tf.fill(tf.shape(side.clock), t))
        return tf.constant(True)

    def catch_up(self) -> None:
        """Bring every lazily updated row to the current step, so the variables equal dense Adam's.

        Called before every eval; call it before reading or saving the weights yourself.
        """
        if self._catch_up_fn is None:
            return
        if int(self.step.numpy()) == 0:
            for clock in self.row_clocks.values():
                clock.assign(tf.zeros_like(clock))
            return
        self._catch_up_fn()

    def reset_optimizer_state(self) -> None:
        """Step, moments, row clocks and loss scale back to their initial values (weights untouched)."""
        for var in [self.step, *self.m, *self.v, *self.row_clocks.values()]:
            var.assign(tf.zeros_like(var))
        if self.loss_scale:
            self.loss_scale.good_steps.assign(0)

    # -- evaluation -------------------------------------------------------------------------
    def _eval_sums_impl(self, users, items, dup_mask, catalogue=None):
        if catalogue is not None:
            return eval_sums(self.model, users, items, dup_mask, catalogue, self.match_mlperf)
        row = constants.EVAL_ROW
        flat_users = tf.repeat(users, row)
        logits = self.model(flat_users, tf.reshape(items, [-1]))
        in_top_k, ndcg, weights, _ = compute_top_k_and_ndcg(
            logits, tf.reshape(dup_mask, [-1]), match_mlperf=self.match_mlperf)
        w = tf.cast(weights, tf.float32)
        return tf.stack([tf.reduce_sum(in_top_k * w), tf.reduce_sum(ndcg * w), tf.reduce_sum(w)])

    def _on_replica_device(self):
        """Pin a compiled call to this replica's device.

        A jit_compile'd function called inside strategy.run (in a tf.range loop) is otherwise
        placed on the first device and cannot read another replica's variables.
        """
        return tf.device(self.variables[0].device)

    def _replica_catalogue(self):
        with self._on_replica_device():
            return self._catalogue()

    def _replica_eval_sums(self, *args):
        with self._on_replica_device():
            return self._eval_sums(*args)

    def _eval_steps(self, iterator, num_steps):
        catalogue = self.strategy.run(self._replica_catalogue) if self.fast_eval else None
        total = tf.zeros([3], tf.float64)
        for _ in tf.range(num_steps):
            users, items, dup_mask = next(iterator)
            args = (users, items, dup_mask) + ((catalogue,) if catalogue is not None else ())
            per_replica = self.strategy.run(self._replica_eval_sums, args=args)
            total += tf.cast(self.strategy.reduce(SUM, per_replica, axis=None), tf.float64)
        return total

    def evaluate(self, distributed_eval_dataset, num_steps: int) -> EvalSums:
        """HR@10/NDCG@10 sums over the whole (sharded, padded) eval set, after `catch_up`."""
        self.catch_up()
        totals = self.eval_steps(iter(distributed_eval_dataset), tf.constant(num_steps)).numpy()
        return EvalSums(float(totals[0]), float(totals[1]), float(totals[2]))


def _plain_logits(model: NeuMF, user: tf.Tensor, item: tf.Tensor) -> tf.Tensor:
    """`NeuMF.__call__` from already gathered embedding rows (the unsplit reference arithmetic)."""
    dtype = model.compute_dtype
    user, item = tf.cast(user, dtype), tf.cast(item, dtype)
    mf_vector = user[:, : model.mf_dim] * item[:, : model.mf_dim]
    mlp_in = tf.concat([user[:, model.mf_dim:], item[:, model.mf_dim:]], axis=1)
    preact = tf.matmul(mlp_in, tf.cast(model.mlp_kernels[0], dtype)) + tf.cast(model.mlp_biases[0], dtype)
    return model.output_logit(mf_vector, model.mlp_tower(preact))


def _as_true(op) -> tf.Tensor:
    """A tensor that depends on `op` (tf.cond branches must return tensors, not operations)."""
    with tf.control_dependencies([op]):
        return tf.constant(True)


def _is_tpu(strategy: tf.distribute.Strategy) -> bool:
    return "TPU" in type(strategy).__name__
