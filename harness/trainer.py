"""Compiled training and evaluation steps for NeuMF under any tf.distribute strategy.

The same code runs on one device, MirroredStrategy, MultiWorkerMirroredStrategy and TPUStrategy:
  * each replica computes the loss of its slice as sum(loss) / (global valid examples), so the
    all-reduced (summed) gradients are exactly the single-device gradients of the global batch;
  * gradients are made dense (as the seed does: faster Adam for these tables), summed across
    replicas, and applied once per replica through `strategy.extended.update` inside
    `merge_call` — the pattern the strategies' own optimizers use;
  * eval returns per-replica sums of hits, NDCG and row weights, reduced with SUM, so sharded
    eval gives the single-device HR and NDCG exactly;
  * `train_steps` runs many steps per compiled call (`steps_per_call`), avoiding a Python round
    trip per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from reference import constants
from reference.metrics import compute_top_k_and_ndcg
from reference.model import NeuMF, per_example_loss
from reference.optimizer import AdamConfig, apply_adam, bias_corrections

SUM = tf.distribute.ReduceOp.SUM


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


class Trainer:
    """Owns the optimizer state and the compiled train/eval functions for one model."""

    def __init__(self, strategy: tf.distribute.Strategy, model: NeuMF, adam: AdamConfig,
                 match_mlperf: bool = True, xla: bool = False) -> None:
        self.strategy = strategy
        self.model = model
        self.adam = adam
        self.match_mlperf = match_mlperf
        self.variables = model.ordered_variables
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_step")
            self.m = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adam_m") for v in self.variables]
            self.v = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adam_v") for v in self.variables]
        self._gradients = tf.function(self._gradients_impl, jit_compile=xla) if xla else self._gradients_impl
        self._eval_sums = tf.function(self._eval_sums_impl, jit_compile=xla) if xla else self._eval_sums_impl
        self.train_steps = tf.function(self._train_steps)
        self.eval_steps = tf.function(self._eval_steps)

    # -- training ---------------------------------------------------------------------------
    def _gradients_impl(self, users, items, labels, valid, global_count):
        with tf.GradientTape() as tape:
            logits = self.model(users, items)
            loss = tf.reduce_sum(per_example_loss(logits, labels) * valid) / global_count
            loss += self.model.regularization_loss() / float(self.strategy.num_replicas_in_sync)
        grads = tape.gradient(loss, self.variables)
        return loss, [tf.convert_to_tensor(g) for g in grads]

    def _replica_step(self, users, items, labels, valid):
        ctx = tf.distribute.get_replica_context()
        global_count = ctx.all_reduce(SUM, tf.reduce_sum(valid))
        loss, grads = self._gradients(users, items, labels, valid, tf.maximum(global_count, 1.0))
        grads = ctx.all_reduce(SUM, grads)
        next_step = self.step + 1
        ctx.merge_call(self._apply, args=(grads, next_step))
        return loss

    def _apply(self, strategy, grads, next_step):
        extended = strategy.extended
        extended.update(self.step, lambda s, t: s.assign(t), args=(next_step,), group=False)

        def update(var, m, v, grad, t):
            beta1_power, beta2_power = bias_corrections(self.adam, t)
            return apply_adam(var, m, v, grad, self.adam, beta1_power, beta2_power)

        for var, m, v, grad in zip(self.variables, self.m, self.v, grads):
            extended.update(var, update, args=(m, v, grad, next_step), group=False)

    def _train_steps(self, iterator, num_steps):
        total = tf.constant(0.0)
        for _ in tf.range(num_steps):
            users, items, labels, valid = next(iterator)
            per_replica = self.strategy.run(self._replica_step, args=(users, items, labels, valid))
            total += self.strategy.reduce(SUM, per_replica, axis=None)
        return total

    # -- evaluation -------------------------------------------------------------------------
    def _eval_sums_impl(self, users, items, dup_mask):
        row = constants.EVAL_ROW
        flat_users = tf.repeat(users, row)
        logits = self.model(flat_users, tf.reshape(items, [-1]))
        in_top_k, ndcg, weights, _ = compute_top_k_and_ndcg(
            logits, tf.reshape(dup_mask, [-1]), match_mlperf=self.match_mlperf)
        w = tf.cast(weights, tf.float32)
        return tf.stack([tf.reduce_sum(in_top_k * w), tf.reduce_sum(ndcg * w), tf.reduce_sum(w)])

    def _eval_steps(self, iterator, num_steps):
        total = tf.zeros([3])
        for _ in tf.range(num_steps):
            users, items, dup_mask = next(iterator)
            per_replica = self.strategy.run(self._eval_sums, args=(users, items, dup_mask))
            total += self.strategy.reduce(SUM, per_replica, axis=None)
        return total

    def evaluate(self, distributed_eval_dataset, num_steps: int) -> EvalSums:
        """HR@10/NDCG@10 sums over the whole (sharded, padded) eval set."""
        totals = self.eval_steps(iter(distributed_eval_dataset), tf.constant(num_steps)).numpy()
        return EvalSums(float(totals[0]), float(totals[1]), float(totals[2]))
