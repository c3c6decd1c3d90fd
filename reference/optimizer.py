"""Adam as the seed uses it: `tf.compat.v1.train.AdamOptimizer`, the "epsilon hat" form.

    lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    m    = beta1 * m + (1 - beta1) * g
    v    = beta2 * v + (1 - beta2) * g^2
    w   -= lr_t * m / (sqrt(v) + epsilon)

Epsilon is added to sqrt(v) *before* bias correction, unlike PyTorch's Adam; docs/reference-facts.md §5 notes
that the same constants therefore do not make the same optimizer across frameworks. The update
runs TF's own fused `ResourceApplyAdam` kernel (what the v1 optimizer runs), one variable at a
time, so the harness can call it per replica inside `strategy.extended.update`.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class AdamConfig:
    """The four constants MLPerf lets a closed submission choose."""

    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8


def bias_corrections(config: AdamConfig, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(beta1^t, beta2^t) for the 1-based step t, in float32 like the v1 optimizer's accumulators."""
    t = tf.cast(step, tf.float32)
    return tf.pow(tf.constant(config.beta1, tf.float32), t), tf.pow(tf.constant(config.beta2, tf.float32), t)


def apply_adam(var: tf.Variable, m: tf.Variable, v: tf.Variable, grad: tf.Tensor,
               config: AdamConfig, beta1_power: tf.Tensor, beta2_power: tf.Tensor) -> tf.Operation:
    """One dense Adam update of `var` with slots `m`, `v` (all plain, same-device variables)."""
    return tf.raw_ops.ResourceApplyAdam(
        var=var.handle, m=m.handle, v=v.handle,
        beta1_power=tf.cast(beta1_power, var.dtype), beta2_power=tf.cast(beta2_power, var.dtype),
        lr=tf.constant(config.learning_rate, var.dtype), beta1=tf.constant(config.beta1, var.dtype),
        beta2=tf.constant(config.beta2, var.dtype), epsilon=tf.constant(config.epsilon, var.dtype),
        grad=tf.convert_to_tensor(grad), use_locking=False)
