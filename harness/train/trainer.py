"""Compiled training and evaluation steps for NeuMF under any tf.distribute strategy.

Two training paths share the model, the training state (harness.train.state) and the results
(to float tolerance):

* The distributed path (any strategy; wherever the fused step does not apply or is switched
  off: see harness.train.fast.choice), here: each replica computes the loss of its slice as
  sum(loss) / (global valid examples), so the all-reduced gradients are exactly the
  single-device gradients of the global batch; gradients are made dense (as the seed does),
  summed across replicas, and applied once per replica through `strategy.extended.update`
  inside `merge_call`, the pattern the strategies' own optimizers use.
* The fused path (one replica with XLA, e.g. the `cpu` profile): gradient and update of a step
  as one XLA program, with dense Adam from a batch's distinct rows or the exact lazy Adam
  (harness.train.fast.fused_step).

Which fast paths run is a `FastPaths` value (harness.train.fast.choice): `FastPaths()` is the
default, `FastPaths.reference()` the plain path (the distributed step, the model's own forward
pass, dense Adam, the argsort eval) that the tests compare every fast path with. With
`split_first_layer`, both paths compute the first MLP layer once per distinct user / item of a
batch, or once per table row when the table is smaller than the batch (harness.train.fast.split_mlp);
with `fast_eval`, eval computes the item half once per catalogue item and the user half once per
user (harness.train.fast.fast_eval). `train_steps` runs many steps per call, avoiding a Python
round trip per step. Eval returns per-replica sums of hits, NDCG and row weights, reduced with
SUM, so sharded eval gives the single-device HR and NDCG exactly.

float16 compute (mixed_float16) gets dynamic loss scaling (harness.train.fast.loss_scale);
bfloat16 and float32 need none. Whatever the compute dtype, variables and Adam's moments are
float32, the loss is float32, and every eval path computes the output layer in float32. bfloat16
on a CPU runs its matrix products as TensorFlow ops rather than inside XLA (`paths.tf_matmuls`,
harness.train.fast.choice says why): the gradient function and eval run uncompiled there, and the
fused step compiles only the rows it reads and the update.

Reading order: the state (`__init__`), `train_steps` and the distributed step, `evaluate`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from harness.train.fast.capacity import DistinctRowCapacity
from harness.train.fast.choice import AUTO, FastPaths, loss_scaling_for, tf_matmuls_apply
from harness.train.fast.fast_eval import catalogue_parts, eval_sums, model_logits_fp32
from harness.train.fast.fused_step import FusedStep
from harness.train.fast.loss_scale import DynamicLossScale
from harness.train.fast.split_mlp import part_for, split_logits_from_tables
from harness.train.state import TrainState, summed_loss
from reference import constants
from reference.metrics import compute_top_k_and_ndcg, eval_loss_sums
from reference.model import NeuMF
from reference.optimizer import AdamConfig, apply_adam, bias_corrections

SUM = tf.distribute.ReduceOp.SUM

EVAL_SUMS = 5   # hits, NDCG sum, real rows, eval-loss sum, eval-loss weight: one eval batch's statistics


@dataclass
class EvalSums:
    """Summed eval statistics over all users (padding rows carry weight 0)."""

    hits: float
    ndcg: float
    weight: float
    loss_sum: float       # reference.metrics.eval_loss_sums, pooled over batches and replicas
    loss_weight: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.weight if self.weight else 0.0

    @property
    def ndcg_mean(self) -> float:
        return self.ndcg / self.weight if self.weight else 0.0

    @property
    def eval_loss(self) -> float:
        """The seed's eval cross-entropy over the whole eval set (0 without real rows)."""
        return self.loss_sum / self.loss_weight if self.loss_weight else 0.0


class Trainer:
    """Owns the training state and the compiled train/eval functions for one model.

    Args:
        strategy, model, adam: what to train, where, with which Adam constants.
        match_mlperf: mask duplicate eval candidates (closed division).
        xla: compile the per-replica compute with XLA (jit_compile).
        paths: the fast paths allowed (`FastPaths()`, the default; `FastPaths.reference()`, the
            plain path). `self.paths` is what runs on this strategy (`FastPaths.applied`); a lazy
            optimizer where no fused step runs raises ValueError.
        row_frequencies: optional (user, item) relative frequencies among training examples,
            used to plan how many distinct rows a batch holds (speed only; never results).
        loss_scale: "auto" (dynamic for float16 compute, none otherwise), "dynamic" or None.
        initial_loss_scale, loss_scale_growth_interval: the dynamic loss scale's start, and the
            finite steps before it doubles (2,000).
    """

    def __init__(self, strategy: tf.distribute.Strategy, model: NeuMF, adam: AdamConfig,
                 match_mlperf: bool = True, xla: bool = False, paths: FastPaths = FastPaths(),
                 row_frequencies: Sequence[np.ndarray | None] = (None, None),
                 loss_scale: str | None = AUTO, initial_loss_scale: float = 2.0 ** 15,
                 loss_scale_growth_interval: int = 2000) -> None:
        self.strategy = strategy
        self.match_mlperf = match_mlperf
        self.xla = bool(xla)
        regularised = model.mf_regularization != 0.0
        bf16_on_cpu = tf_matmuls_apply(model.compute_dtype.name, _device_kind(model))
        self.paths = paths.applied(self.xla, strategy.num_replicas_in_sync, _is_tpu(strategy), regularised,
                                   bf16_on_cpu=bf16_on_cpu)
        if loss_scale == AUTO:
            loss_scale = loss_scaling_for("mixed_float16" if model.compute_dtype == tf.float16 else "")
        if loss_scale not in (None, "dynamic"):
            raise ValueError(f"loss_scale must be 'auto', 'dynamic' or None, got {loss_scale!r}")
        with strategy.scope():
            scale = DynamicLossScale(initial_loss_scale, loss_scale_growth_interval) if loss_scale else None
            self.state = TrainState.create(model, adam, scale)
            self.capacity = DistinctRowCapacity(model, row_frequencies)
            self.fused_step = FusedStep(self.state, self.paths, self.capacity) if self.paths.fused_step else None
        compiled = self.xla and not self.paths.tf_matmuls   # tf_matmuls: the products as TensorFlow ops
        jit = functools.partial(tf.function, jit_compile=True) if compiled else (lambda f: f)
        self._part = part_for(self.paths.tf_matmuls)   # the work around the products (split_mlp.Part)
        self._gradients = jit(self._gradients_impl)
        self._train_loop = tf.function(self._train_steps)
        self._eval_sums = jit(self._eval_sums_impl)
        self._catalogue = jit(lambda: catalogue_parts(self.model))
        self.eval_steps = tf.function(self._eval_steps)

    # -- the state, as callers read it ------------------------------------------------------------
    @property
    def model(self) -> NeuMF:
        return self.state.model

    @property
    def adam(self) -> AdamConfig:
        return self.state.adam

    @property
    def variables(self) -> list[tf.Variable]:
        return self.state.variables

    @property
    def step(self) -> tf.Variable:
        return self.state.step

    @property
    def m(self) -> list[tf.Variable]:
        return self.state.m

    @property
    def v(self) -> list[tf.Variable]:
        return self.state.v

    @property
    def loss_scale(self) -> DynamicLossScale | None:
        return self.state.loss_scale

    @property
    def fused(self) -> bool:
        return self.fused_step is not None

    @property
    def user_ordered_batches(self) -> bool:
        """Whether training batches should come sorted by user (`input_pipeline.order_by_user`)."""
        return self.paths.user_order

    def describe(self) -> dict:
        """What runs, for logs and the throughput report (lazy tables and capacities once a batch was seen)."""
        batch = self.capacity.batch
        lazy = self.fused_step.lazy_tables(self.capacity.plans(batch, full=False)) if batch else None
        return {**self.paths.settings(self.xla, "dynamic" if self.loss_scale else None, self.model.compute_dtype.name),
                "lazy_tables": lazy, "side_plans": self.capacity.describe()}

    def reset_optimizer_state(self) -> None:
        """Step, moments, row clocks and the loss scale's good steps back to their start (weights untouched)."""
        self.state.reset()
        if self.fused_step is not None:
            self.fused_step.reset_row_clocks()

    def catch_up(self) -> None:
        """Bring every lazily updated row to the current step, so the variables equal dense Adam's.

        Called before every eval; call it before reading or saving the weights yourself.
        """
        if self.fused_step is not None:
            self.fused_step.catch_up()

    # -- training -------------------------------------------------------------------------------
    def train_steps(self, iterator, num_steps) -> tf.Tensor:
        """Run `num_steps` training steps from `iterator` in one compiled call; the summed loss."""
        if self.fused_step is not None:
            return self.fused_step.train_steps(iterator, num_steps)
        return self._train_loop(iterator, num_steps)

    def compiled_step(self, batch: int, update: bool = True):
        """The fused step for per-replica `batch` as a callable(users, items, labels, valid).

        For profiling (harness.measure.throughput): `update=False` computes the same forward and
        backward pass (and gradients) but no replay and no Adam, so the optimizer's share of a
        step is the difference. Uses the current capacity plan; batches must fit it.
        """
        if self.fused_step is None:
            raise ValueError("compiled_step needs the fused path (one replica with XLA)")
        return self.fused_step.compiled(self.capacity.plans(batch, full=False), update=update)

    def _train_steps(self, iterator, num_steps):
        total = tf.constant(0.0)
        for _ in tf.range(num_steps):
            users, items, labels, valid = next(iterator)
            per_replica = self.strategy.run(self._replica_step, args=(users, items, labels, valid))
            total += self.strategy.reduce(SUM, per_replica, axis=None)
        return total

    def _gradients_impl(self, users, items, labels, valid, global_count):
        batch = users.shape[0]
        with tf.GradientTape() as tape:
            if self.paths.split_first_layer and batch is not None:
                logits = split_logits_from_tables(self.model, users, items, self.capacity.plans(batch, full=True),
                                                  part=self._part)
            else:
                logits = self.model(users, items)
            loss = summed_loss(logits, labels, valid, global_count)
            loss += self.model.regularization_loss() / float(self.strategy.num_replicas_in_sync)
            scaled = self.state.scaled(loss)
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

    # -- evaluation -------------------------------------------------------------------------
    def _eval_sums_impl(self, users, items, dup_mask, catalogue=None):
        if catalogue is not None:
            return eval_sums(self.model, users, items, dup_mask, catalogue, self.match_mlperf, self._part)
        row = constants.EVAL_ROW
        flat_users = tf.repeat(users, row)
        logits = model_logits_fp32(self.model, flat_users, tf.reshape(items, [-1]))
        in_top_k, ndcg, weights, _ = compute_top_k_and_ndcg(
            logits, tf.reshape(dup_mask, [-1]), match_mlperf=self.match_mlperf)
        w = tf.cast(weights, tf.float32)
        loss_sum, loss_weight = eval_loss_sums(logits, tf.reshape(dup_mask, [-1]))
        return tf.stack([tf.reduce_sum(in_top_k * w), tf.reduce_sum(ndcg * w), tf.reduce_sum(w), loss_sum, loss_weight])

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
        catalogue = self.strategy.run(self._replica_catalogue) if self.paths.fast_eval else None
        total = tf.zeros([EVAL_SUMS], tf.float64)
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
        return EvalSums(*(float(t) for t in totals))


def _as_true(op) -> tf.Tensor:
    """A tensor that depends on `op` (tf.cond branches must return tensors, not operations)."""
    with tf.control_dependencies([op]):
        return tf.constant(True)


def _is_tpu(strategy: tf.distribute.Strategy) -> bool:
    return "TPU" in type(strategy).__name__


def _device_kind(model: NeuMF) -> str:
    """"cpu", "gpu" or "tpu": where the model's variables live (a replicated variable: its first copy)."""
    name = tf.DeviceSpec.from_string(model.embedding_user.device).device_type or "CPU"
    return name.lower()
