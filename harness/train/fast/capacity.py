"""How many distinct rows each side of a training batch is compiled for, planned and then learnt.

Why: under XLA the split first layer needs a static number of distinct users and items per batch,
and every planned row costs a share of the first layer. The first plan comes from the data's
row frequencies (`choice.plan_side`); without them it assumes uniform ids, which overstates the
distinct users of a real (skewed) batch by 20% or more, so the fused step records the largest
count full batches really held and the capacity follows it (one recompile, in practice once
per run).

Exactness: a plan changes only the speed. Every batch's true count is checked against the plan,
and a batch above it runs the full-size variant (`fits` in `observe`);
tests/train/test_fast_lazy_adam.py::test_too_small_capacity_plan_falls_back_exactly trains with a
plan far too small and still gets the plain path's results.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from harness.train.fast.choice import ALL_ROWS, SidePlan, capacity_for, plan_side
from harness.train.fast.split_mlp import distinct_count
from reference.model import NeuMF

SIDES = ("user", "item")
Plans = tuple[SidePlan, SidePlan]


class DistinctRowCapacity:
    """The (user, item) SidePlans for a batch size: from row frequencies, tightened by what batches held.

    Create inside the strategy's scope (it owns a variable the fused step writes).
    """

    def __init__(self, model: NeuMF, row_frequencies: Sequence[np.ndarray | None] = (None, None)) -> None:
        self.num_rows = (model.num_users, model.num_items)
        self.row_frequencies = tuple(row_frequencies)
        self.batch: int | None = None                  # per-replica batch of the fused step, once traced
        self.learnt: list[int | None] = [None, None]   # capacities learnt for sides without frequencies
        self.seen = tf.Variable([0, 0], dtype=tf.int32, trainable=False, name="seen_distinct")
        self._base: dict[int, Plans] = {}

    def base_plans(self, batch: int) -> Plans:
        """The plans from the row frequencies (or uniform ids), computed once per batch size."""
        if batch not in self._base:
            self._base[batch] = tuple(plan_side(rows, batch, freq)
                                      for rows, freq in zip(self.num_rows, self.row_frequencies))
        return self._base[batch]

    def plans(self, batch: int, full: bool) -> Plans:
        """The plans to compile: learnt capacities where there are some, or (`full`) capacities that always fit."""
        plans = []
        for side, plan in enumerate(self.base_plans(batch)):
            learnt = self.learnt[side]
            if plan.mode != ALL_ROWS and (full or learnt is not None):
                capacity = plan.full_capacity if full else min(learnt, plan.full_capacity)
                plan = SidePlan(plan.mode, plan.num_rows, capacity, plan.full_capacity)
            plans.append(plan)
        return plans[0], plans[1]

    def describe(self) -> dict | None:
        """Each side's mode and capacity, once the fused step has seen a batch."""
        if not self.batch:
            return None
        return {name: {"mode": p.mode, "capacity": p.capacity} for name, p in zip(SIDES, self.plans(self.batch, False))}

    def observe(self, ids_by_side: Sequence[tf.Tensor], valid: tf.Tensor, plans: Plans) -> tf.Tensor:
        """Record the distinct rows of a full batch (for `learn`); True if the batch fits `plans`."""
        fits = tf.constant(True)
        full_batch = tf.equal(tf.reduce_sum(valid), float(valid.shape[0]))
        for side, (ids, plan) in enumerate(zip(ids_by_side, plans)):
            if plan.mode == ALL_ROWS:
                continue
            count = distinct_count(ids, plan.num_rows)
            observed = tf.where(full_batch, count, 0)
            self.seen[side].assign(tf.maximum(self.seen[side], observed))
            fits = tf.logical_and(fits, count <= plan.capacity)
        return fits

    def learn(self) -> None:
        """After a call that saw full batches: a side without frequencies gets the largest count seen
        plus 8 standard deviations (`capacity_for`) when that is 3% tighter or the plan was too small."""
        batch = self.batch
        if batch is None or all(p.mode == ALL_ROWS or f is not None
                                for p, f in zip(self.base_plans(batch), self.row_frequencies)):
            return
        seen = self.seen.numpy()
        for side, plan in enumerate(self.plans(batch, full=False)):
            if plan.mode == ALL_ROWS or self.row_frequencies[side] is not None or seen[side] <= 0:
                continue
            proposed = min(plan.full_capacity, capacity_for(float(seen[side]), batch))
            if proposed < 0.97 * plan.capacity or seen[side] > plan.capacity:
                self.learnt[side] = proposed
