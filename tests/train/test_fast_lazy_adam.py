"""The exact lazy Adam (harness.train.fast.lazy_adam, FastPaths(optimizer_impl="lazy_exact")) equals dense Adam.

Why these tests: lazy_exact must be dense Adam in disguise (a profile may choose it), and the
default dense update of a table with distinct rows is itself written in plain operations. They
compare every variable and both moments after many steps of random sparse batches (a few users
carry half the examples, so most rows sit untouched for many steps and must be replayed), with
padded tails, several steps per call, a capacity plan too small for the batches, and the
runner's warm-up-then-reset sequence.

Two levels of "equal":
* The optimizer alone: the replay of skipped steps is bit-identical to ResourceApplyAdam's XLA
  kernel; on the same fused XLA step with the model's own forward pass, lazy_exact and the dense
  default agree to rounding (test_lazy_exact_equals_dense_adam_on_the_same_step).
* The whole fast stack against the plain reference path (distributed step, no XLA, model forward,
  ResourceApplyAdam's CPU kernel on every row): gradients summed in another order (XLA, the split
  first layer) differ in the last bits, and Adam divides by sqrt(v), so an element whose gradient
  is mostly rounding noise can move by a visible fraction of lr. The reference path compiled with
  XLA differs from itself uncompiled by ~1e-6 relative. Measured here: at most ~6e-6 relative
  (norm of the difference over the norm of the training change per variable); the tests allow
  1e-4, and 1% of lr per element. MLPerf's Lazy Adam ("lazy_adam") must differ by far more.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from harness.train.fast.choice import DENSE, LAZY_ADAM, LAZY_EXACT, FastPaths
from harness.train.input_pipeline import train_dataset
from harness.train.fast.lazy_adam import apply_dense_adam_from_rows, replay_sorted, sort_by_skipped, step_size
from harness.train.fast.split_mlp import dense_from_rows, distinct_rows_and_slots
from harness.train.trainer import Trainer
from reference.model import NeuMF
from reference.optimizer import AdamConfig, apply_adam, bias_corrections

USERS, ITEMS, BATCH, STEPS = 150, 110, 32, 20
# The ml-20m constants of the cpu profile (beta2 0.909: v decays fast, so epsilon matters).
ADAM = AdamConfig(0.01, 0.783529, 0.909003, 1.45439e-7)
LAYERS = (16, 16, 8)
TOLERANCE = dict(rtol=1e-4, atol=0.01 * ADAM.learning_rate)
RELATIVE_CHANGE_TOLERANCE = 1e-4


def sparse_epoch(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """STEPS batches minus a padded tail; half the examples from 10 users, so rows skip many steps."""
    rng = np.random.default_rng(seed)
    n = STEPS * BATCH - 9
    users = np.where(rng.random(n) < 0.5, rng.integers(0, 10, n), rng.integers(0, USERS, n)).astype(np.int32)
    items = np.where(rng.random(n) < 0.5, rng.integers(0, 12, n), rng.integers(0, ITEMS, n)).astype(np.int32)
    return users, items, (rng.random(n) < 0.25).astype(np.float32)


def trained(per_call: int = 5, warm_up: bool = False, reg: float = 0.0, **options) -> Trainer:
    """A Trainer after STEPS steps of `sparse_epoch`, caught up (variables as dense Adam has them)."""
    strategy = tf.distribute.get_strategy()
    model = NeuMF(USERS, ITEMS, mf_dim=8, layers=LAYERS, seed=7, mf_regularization=reg)
    trainer = Trainer(strategy, model, ADAM, **options)
    if warm_up:   # what runner._compile does: an all-padding step, then step/m/v reset to zero
        empty = np.zeros(0, np.int32)
        trainer.train_steps(iter(train_dataset(strategy, empty, empty, empty.astype(np.float32), 1, BATCH, 1)),
                            tf.constant(1))
        for var in [trainer.step, *trainer.m, *trainer.v]:
            var.assign(tf.zeros_like(var))
    # Batches in the order the Trainer asks for, as the runner feeds them: the fused path's are
    # sorted by user, the reference path's are not.
    iterator = iter(train_dataset(strategy, *sparse_epoch(), STEPS, BATCH, 1, user_order=trainer.user_ordered_batches))
    done = 0
    while done < STEPS:
        n = min(per_call, STEPS - done)
        trainer.train_steps(iterator, tf.constant(n))
        done += n
    trainer.catch_up()
    return trainer


@pytest.fixture(scope="module")
def reference() -> Trainer:
    return trained(xla=False, paths=FastPaths.reference())


def initial_variables() -> list[np.ndarray]:
    return [v.numpy() for v in NeuMF(USERS, ITEMS, mf_dim=8, layers=LAYERS, seed=7).ordered_variables]


def assert_same_state(got: Trainer, want: Trainer) -> None:
    """Float-tolerance equality of weights and moments (see the module docstring)."""
    assert int(got.step.numpy()) == int(want.step.numpy()) == STEPS
    for name, a, b in zip(("weights", "m", "v"), (got.variables, got.m, got.v), (want.variables, want.m, want.v)):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.numpy(), y.numpy(), err_msg=f"{name} {x.name}",
                                       rtol=TOLERANCE["rtol"], atol=TOLERANCE["atol"] if name == "weights" else 1e-7)
    for x, y, start in zip(got.variables, want.variables, initial_variables()):
        change = np.linalg.norm(y.numpy() - start)
        assert change > 0, f"{x.name} did not train"
        assert np.linalg.norm(x.numpy() - y.numpy()) / change < RELATIVE_CHANGE_TOLERANCE, x.name


def test_replay_is_bitwise_dense_adam_with_zero_gradients():
    """k zero-gradient ResourceApplyAdam steps (XLA kernel) == replay_sorted, bit for bit."""
    rng = np.random.default_rng(1)
    n, d, target = 300, 5, 40
    w0 = rng.normal(size=(n, d)).astype(np.float32)
    m0 = (rng.normal(size=(n, d)) * 1e-3).astype(np.float32)
    v0 = (rng.random((n, d)) * 1e-6).astype(np.float32)
    last = rng.integers(0, target + 1, n)            # includes rows with nothing to replay
    skipped = target - last
    order, _ = sort_by_skipped(tf.range(n), tf.constant(skipped))
    order = order.numpy()
    replay = tf.function(lambda *a: replay_sorted(*a, config=ADAM, block_rows=16), jit_compile=True)
    got = replay(w0[order], m0[order], v0[order], tf.constant(last[order] + 1), tf.constant(skipped[order]))

    @tf.function(jit_compile=True)
    def dense_step(step, w, m, v):
        beta1_power, beta2_power = bias_corrections(ADAM, step)
        apply_adam(w, m, v, tf.zeros_like(w), ADAM, beta1_power, beta2_power)

    w, m, v = (tf.Variable(x) for x in (w0, m0, v0))
    for step in range(1, target + 1):
        live = (last < step)[:, None]
        w2, m2, v2 = (tf.Variable(x.numpy()) for x in (w, m, v))
        dense_step(tf.constant(step, tf.int64), w2, m2, v2)
        for old, new in ((w, w2), (m, m2), (v, v2)):
            old.assign(np.where(live, new.numpy(), old.numpy()))
    inverse = np.argsort(order)
    for mine, dense in zip(got, (w, m, v)):
        np.testing.assert_array_equal(mine.numpy()[inverse], dense.numpy())
    assert np.any(w.numpy() != w0), "the replay must have moved the weights"


def test_dense_adam_from_rows_equals_resource_apply_adam():
    """The default's table update (gradient gathered from the distinct rows, separately for m and
    for v) == ResourceApplyAdam fed the table-sized gradient, to a few units in the last place:
    the same expressions, but XLA compiles them into different loops, which may round the
    fused multiply-add of v's update differently (seen: 1-2 ulp in about 1% of v's elements)."""
    rng = np.random.default_rng(2)
    n, d, capacity = 400, 24, 150
    start = [rng.normal(size=(n, d)).astype(np.float32), (rng.normal(size=(n, d)) * 1e-3).astype(np.float32),
             (rng.random((n, d)) * 1e-6).astype(np.float32)]
    fast, dense = [tf.Variable(x) for x in start], [tf.Variable(x) for x in start]

    @tf.function(jit_compile=True)
    def steps(ids, row_grad, step):
        _, _, slots = distinct_rows_and_slots(ids, n, capacity)
        apply_dense_adam_from_rows(*fast, row_grad, slots, ADAM, step_size(ADAM, step))
        apply_adam(*dense, dense_from_rows(row_grad, slots), ADAM, *bias_corrections(ADAM, step))

    for step in range(1, 6):
        ids = tf.constant(rng.integers(0, n, 200).astype(np.int32))
        steps(ids, tf.constant(rng.normal(size=(capacity, d)).astype(np.float32) * 1e-2), tf.constant(step, tf.int64))
    for mine, want, first in zip(fast, dense, start):
        np.testing.assert_array_max_ulp(mine.numpy(), want.numpy(), maxulp=4)
        assert np.any(mine.numpy() != first)


@pytest.fixture(scope="module")
def lazy_unsplit() -> Trainer:
    return trained(xla=True, paths=FastPaths(optimizer_impl=LAZY_EXACT, split_first_layer=False))


def test_lazy_exact_equals_dense_adam_on_the_same_step(lazy_unsplit):
    """Same fused XLA step and forward pass: only the optimizer differs, and only in rounding.

    The dense default updates a table with distinct rows through `apply_dense_adam_from_rows`,
    whose v update XLA may round 1-2 ulp differently; after 20 steps that stays below 1e-6
    relative (1e-5 allowed), far below what a real difference in the optimizer moves.
    """
    dense = trained(xla=True, paths=FastPaths(optimizer_impl=DENSE, split_first_layer=False))
    assert lazy_unsplit.describe()["path"] == dense.describe()["path"] == "fused"
    assert lazy_unsplit.describe()["lazy_tables"] == ["user", "item"]
    for x, y in zip(lazy_unsplit.variables + lazy_unsplit.m + lazy_unsplit.v, dense.variables + dense.m + dense.v):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-7, err_msg=x.name)


def test_lazy_exact_equals_reference_dense_adam(lazy_unsplit, reference):
    assert_same_state(lazy_unsplit, reference)


@pytest.mark.parametrize("impl", [DENSE, LAZY_EXACT])
def test_split_fused_step_after_runner_warm_up_equals_reference(reference, impl):
    """The default cpu path (fused, split first layer, dense Adam) and its lazy variant, 3 steps
    per call, after the runner's warm-up: an all-padding step, then a reset of step/m/v (not of
    the row clocks, which the runner does not know about)."""
    got = trained(per_call=3, warm_up=True, xla=True, paths=FastPaths(optimizer_impl=impl))
    assert got.describe()["split_first_layer"] and got.describe()["path"] == "fused"
    assert got.describe()["user_ordered_batches"] and not reference.describe()["user_ordered_batches"]
    assert_same_state(got, reference)


def test_default_fused_step_without_user_order_equals_reference(reference):
    """The batch order is a speed choice only: unsorted batches on the fused path agree too."""
    got = trained(per_call=3, xla=True, paths=FastPaths(user_order=False))
    assert got.describe()["path"] == "fused" and not got.describe()["user_ordered_batches"]
    assert_same_state(got, reference)


def test_too_small_capacity_plan_falls_back_exactly(reference):
    """Frequencies that predict ~10 distinct users make the plan too small: results still exact."""
    skewed = np.r_[np.ones(10), np.full(USERS - 10, 1e-9)]
    got = trained(xla=True, paths=FastPaths(optimizer_impl=LAZY_EXACT), row_frequencies=(skewed, skewed[:ITEMS]))
    plans = got.capacity.plans(BATCH, full=False)
    assert all(p.needs_fallback for p in plans), plans
    assert_same_state(got, reference)


def test_mlperf_lazy_adam_is_a_different_optimizer(reference):
    got = trained(xla=True, paths=FastPaths(optimizer_impl=LAZY_ADAM, split_first_layer=False))
    users, _, _ = sparse_epoch()
    never = np.setdiff1d(np.arange(USERS), users)
    initial = initial_variables()[0]
    assert never.size > 0
    # Untouched rows keep their initial weights (dense Adam never moves a row with zero moments).
    np.testing.assert_array_equal(got.model.embedding_user.numpy()[never], initial[never])
    differs = np.max(np.abs(got.model.embedding_user.numpy() - reference.model.embedding_user.numpy()))
    assert differs > 10 * TOLERANCE["atol"], "Lazy Adam skips the moment decay of untouched rows"


def test_table_penalty_trains_like_the_reference_path():
    """With an L2 penalty on the tables, an XLA Trainer takes the distributed path, whose gradient
    has the penalty on every row (the fused step differentiates only the rows a batch reads)."""
    got = trained(xla=True, reg=1e-2)
    want = trained(xla=False, paths=FastPaths.reference(), reg=1e-2)
    assert got.describe()["path"] == "distributed"
    assert_same_state(got, want)


def test_optimizer_choice():
    strategy = tf.distribute.get_strategy()

    def impl(reg: float = 0.0, **options):
        model = NeuMF(USERS, ITEMS, mf_dim=8, layers=LAYERS, seed=1, mf_regularization=reg)
        return Trainer(strategy, model, ADAM, **options).paths.optimizer_impl

    assert impl(xla=True) == DENSE           # auto: exact lazy Adam is slower on CPU (choice)
    assert impl(xla=True, paths=FastPaths(optimizer_impl=LAZY_EXACT)) == LAZY_EXACT
    assert impl(xla=False) == DENSE
    assert impl(xla=True, paths=FastPaths(fused_step=False)) == DENSE
    with pytest.raises(ValueError, match="needs one replica with XLA"):
        impl(xla=False, paths=FastPaths(optimizer_impl=LAZY_EXACT))
    with pytest.raises(ValueError, match="mf_regularization"):
        impl(xla=True, reg=1e-6, paths=FastPaths(optimizer_impl=LAZY_EXACT))
    with pytest.raises(ValueError, match="optimizer_impl must be"):
        impl(xla=True, paths=FastPaths(optimizer_impl="sgd"))


def test_paths_switched_one_at_a_time():
    """The ablation switches fast paths on one at a time from the reference path; a Trainer takes
    only a FastPaths value, no loose switches."""
    strategy = tf.distribute.get_strategy()
    model = NeuMF(USERS, ITEMS, mf_dim=8, layers=LAYERS, seed=1)
    plain = Trainer(strategy, model, ADAM, xla=True, paths=FastPaths.reference())
    assert plain.describe()["path"] == "distributed"
    over = Trainer(strategy, model, ADAM, xla=True, paths=replace(FastPaths.reference(), fused_step=True))
    assert over.fused and not over.paths.split_first_layer
    with pytest.raises(TypeError):
        Trainer(strategy, model, ADAM, fused_step=True)
