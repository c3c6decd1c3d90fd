"""What training updates: the model's variables, Adam's step counter and moments, the loss scale.

Why a module of its own: the Trainer's distributed step (harness.train.trainer) and the fused
step (harness.train.fast.fused_step) update the same state and minimise the same loss; both take
them from here, so the two paths cannot drift apart in what they train.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from harness.train.fast.loss_scale import DynamicLossScale
from reference.model import NeuMF, per_example_loss
from reference.optimizer import AdamConfig


@dataclass(frozen=True)
class TrainState:
    """The model, Adam's constants and state (m and v follow `model.ordered_variables`), the loss scale."""

    model: NeuMF
    adam: AdamConfig
    step: tf.Variable
    m: list[tf.Variable]
    v: list[tf.Variable]
    loss_scale: DynamicLossScale | None

    @classmethod
    def create(cls, model: NeuMF, adam: AdamConfig, loss_scale: DynamicLossScale | None) -> TrainState:
        """Step 0 and zero moments (call inside the strategy's scope, so the variables are distributed)."""
        variables = model.ordered_variables
        return cls(model, adam, tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_step"),
                   [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adam_m") for v in variables],
                   [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adam_v") for v in variables],
                   loss_scale)

    @property
    def variables(self) -> list[tf.Variable]:
        return self.model.ordered_variables

    def reset(self) -> None:
        """Step, moments and the loss scale's count of good steps back to their initial values."""
        for var in [self.step, *self.m, *self.v]:
            var.assign(tf.zeros_like(var))
        if self.loss_scale:
            self.loss_scale.good_steps.assign(0)

    def scaled(self, loss: tf.Tensor) -> tf.Tensor:
        """The loss to differentiate: scaled when loss scaling is on."""
        return self.loss_scale.scale_loss(loss) if self.loss_scale else loss


def summed_loss(logits: tf.Tensor, labels: tf.Tensor, valid: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """sum(loss of the valid examples) / count: with `count` the global batch's valid examples, the
    replicas' gradients add up to the single-device gradient of the global batch."""
    return tf.reduce_sum(per_example_loss(logits, labels) * valid) / count
