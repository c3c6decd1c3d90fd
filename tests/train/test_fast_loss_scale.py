"""Dynamic loss scaling for float16 (harness.train.fast.loss_scale) on both training paths, run on CPU.

Why: mixed_float16 profiles (GPU) depend on it, and no GPU is available here; CPU float16 runs
the same graph slowly but with the same overflow behaviour. Checked: a non-finite step changes
no weight, moment or step counter and halves the scale; after `growth_interval` finite steps the
scale doubles; float32 and bfloat16 get no loss scaling.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from harness.train.input_pipeline import train_dataset
from harness.train.fast.loss_scale import DynamicLossScale
from harness.train.trainer import Trainer
from reference.model import NeuMF
from reference.optimizer import AdamConfig

USERS, ITEMS, BATCH = 50, 40, 16


def test_rules_skip_halve_double_and_floor():
    scale = DynamicLossScale(initial_scale=8.0, growth_interval=3)
    grads = [tf.constant([1.0, 2.0]), tf.constant([[np.inf]])]
    assert not bool(DynamicLossScale.all_finite(grads))
    assert bool(DynamicLossScale.all_finite(grads[:1]))
    history = []
    for finite in (True, True, False, True, True, True, False, False, False, False):
        scale.update(tf.constant(finite))
        history.append((float(scale.scale.numpy()), int(scale.good_steps.numpy())))
    assert history == [(8, 1), (8, 2), (4, 0), (4, 1), (4, 2), (8, 0), (4, 0), (2, 0), (1, 0), (1, 0)]
    np.testing.assert_allclose(scale.unscale([tf.constant([2.0])])[0].numpy(), [2.0])


def batches(steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = steps * BATCH
    return (rng.integers(0, USERS, n).astype(np.int32), rng.integers(0, ITEMS, n).astype(np.int32),
            (rng.random(n) < 0.3).astype(np.float32))


@pytest.mark.parametrize("xla", [False, True], ids=["distributed", "fused"])
def test_overflowing_steps_are_skipped_then_training_proceeds(xla):
    """Scale 2**24 overflows float16 gradients; each skipped step halves it until steps fit."""
    strategy = tf.distribute.get_strategy()
    model = NeuMF(USERS, ITEMS, mf_dim=8, layers=(16, 8), seed=3, compute_dtype=tf.float16)
    trainer = Trainer(strategy, model, AdamConfig(0.01), xla=xla, initial_loss_scale=2.0 ** 24,
                      loss_scale_growth_interval=3)
    assert trainer.describe()["loss_scale"] == "dynamic"
    assert trainer.describe()["path"] == ("fused" if xla else "distributed")
    steps = 16
    iterator = iter(train_dataset(strategy, *batches(steps), steps, BATCH, 1))
    skipped = applied = good = 0
    expected_scale = 2.0 ** 24
    for _ in range(steps):
        before = [v.numpy().copy() for v in trainer.variables + trainer.m + trainer.v]
        step_before = int(trainer.step.numpy())
        trainer.train_steps(iterator, tf.constant(1))
        after = [v.numpy() for v in trainer.variables + trainer.m + trainer.v]
        if int(trainer.step.numpy()) == step_before:            # skipped: nothing moved
            skipped += 1
            expected_scale, good = max(expected_scale / 2, 1.0), 0
            for x, y in zip(before, after):
                np.testing.assert_array_equal(x, y)
        else:
            applied += 1
            assert int(trainer.step.numpy()) == step_before + 1
            assert any(np.any(x != y) for x, y in zip(before, after))
            good += 1
            if good == 3:                                       # growth after 3 finite steps
                expected_scale, good = expected_scale * 2, 0
        assert float(trainer.loss_scale.scale.numpy()) == expected_scale
        assert int(trainer.loss_scale.good_steps.numpy()) == good
    assert skipped >= 3 and applied >= 3, (skipped, applied)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_no_loss_scaling_outside_float16(dtype):
    model = NeuMF(USERS, ITEMS, mf_dim=8, layers=(16, 8), seed=3, compute_dtype=dtype)
    trainer = Trainer(tf.distribute.get_strategy(), model, AdamConfig(0.01), xla=True)
    assert trainer.loss_scale is None and trainer.describe()["loss_scale"] is None
