"""Dynamic loss scaling for float16 training (mixed_float16), with Keras' LossScaleOptimizer rules.

Why: float16 has 5 exponent bits, so small gradients underflow to zero in the backward pass.
Multiplying the loss by a large factor S lifts them into range; the gradients are divided by S
before Adam sees them. Too large an S overflows instead, so S adapts:
  * a step whose gradients are all finite is applied; after `growth_interval` (2,000) finite
    steps in a row, S doubles;
  * a step with any inf/NaN gradient is skipped entirely (no variable, moment or step-counter
    update, so Adam's bias correction continues as if the step never happened) and S halves
    (never below 1).
bfloat16 has float32's exponent range and needs none of this; float32 neither.
The state lives in two variables so it survives across compiled calls and is mirrored like the
model under any tf.distribute strategy (all replicas see the same all-reduced gradients, hence
the same decision).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

INITIAL_SCALE = 2.0 ** 15
GROWTH_INTERVAL = 2000


class DynamicLossScale:
    """Loss scale S plus the count of finite steps since it last changed."""

    def __init__(self, initial_scale: float = INITIAL_SCALE, growth_interval: int = GROWTH_INTERVAL) -> None:
        if initial_scale < 1 or growth_interval < 1:
            raise ValueError("initial_scale must be >= 1 and growth_interval >= 1")
        self.growth_interval = int(growth_interval)
        self.scale = tf.Variable(float(initial_scale), dtype=tf.float32, trainable=False, name="loss_scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="loss_scale_good_steps")

    def scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
        return loss * tf.cast(self.scale, loss.dtype)

    def unscale(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """Gradients of the scaled loss divided by S (in float32: the variables' dtype)."""
        inverse = 1.0 / self.scale
        return [g * tf.cast(inverse, g.dtype) for g in grads]

    @staticmethod
    def all_finite(grads: Sequence[tf.Tensor]) -> tf.Tensor:
        """bool scalar: no inf or NaN in any gradient."""
        flags = [tf.reduce_all(tf.math.is_finite(g)) for g in grads]
        return tf.reduce_all(tf.stack(flags))

    def next_state(self, finite: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(new scale, new good-step count) after a step whose gradients were `finite` or not."""
        good = self.good_steps + 1
        grow = good >= self.growth_interval
        scale_if_finite = tf.where(grow, self.scale * 2.0, self.scale)
        good_if_finite = tf.where(grow, tf.zeros_like(good), good)
        scale = tf.where(finite, scale_if_finite, tf.maximum(self.scale / 2.0, 1.0))
        good = tf.where(finite, good_if_finite, tf.zeros_like(good))
        return scale, good

    def update(self, finite: tf.Tensor) -> None:
        """Assign the next state (single-replica code; distributed code assigns `next_state`)."""
        scale, good = self.next_state(finite)
        self.scale.assign(scale)
        self.good_steps.assign(good)
