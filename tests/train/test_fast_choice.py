"""FastPaths (harness.train.fast.choice): the reference path, the default choice, and what applies where.

Why: every fast-path test compares against `FastPaths.reference()`, so it must be the plain path
itself; and `throughput --dry-run` reports `planned_settings` for hardware that is not present,
so it must say what a Trainer built on the same topology runs.
"""
from __future__ import annotations

import pytest
import tensorflow as tf

from harness.train.fast.choice import AUTO, DENSE, LAZY_ADAM, LAZY_EXACT, FastPaths, planned_settings
from harness.train.trainer import Trainer
from reference.model import NeuMF
from reference.optimizer import AdamConfig


def test_reference_is_the_plain_path_everywhere():
    plain = FastPaths.reference()
    assert (plain.fused_step, plain.split_first_layer, plain.fast_eval, plain.optimizer_impl, plain.user_order) == (
        False, False, False, DENSE, False)
    for xla, replicas, tpu in ((True, 1, False), (False, 1, False), (True, 8, False), (True, 8, True)):
        assert plain.applied(xla, replicas, tpu, regularised=False) == plain


def test_default_applies_the_fused_step_only_on_one_replica_with_xla():
    default = FastPaths()
    assert default.optimizer_impl == AUTO and default.split_first_layer and default.fast_eval
    one = default.applied(xla=True, num_replicas=1, tpu=False, regularised=False)
    assert one.fused_step and one.user_order and one.optimizer_impl == DENSE
    for xla, replicas, tpu, regularised in ((False, 1, False, False), (True, 8, False, False),
                                            (True, 8, True, False), (True, 1, False, True)):
        other = default.applied(xla, replicas, tpu, regularised)
        assert not other.fused_step and not other.user_order and other.split_first_layer


def test_for_optimizer_and_lazy_requests():
    assert FastPaths.for_optimizer("adam") == FastPaths()
    assert FastPaths.for_optimizer(LAZY_ADAM).optimizer_impl == LAZY_ADAM
    assert FastPaths(optimizer_impl=LAZY_EXACT).applied(True, 1, False, False).optimizer_impl == LAZY_EXACT
    with pytest.raises(ValueError, match="needs one replica with XLA"):
        FastPaths.for_optimizer(LAZY_ADAM).applied(True, 8, False, False)


@pytest.mark.parametrize("xla", [False, True])
def test_planned_settings_are_what_the_trainer_describes(xla):
    model = NeuMF(40, 30, mf_dim=8, layers=(16, 8), seed=0)
    described = Trainer(tf.distribute.get_strategy(), model, AdamConfig(0.01), xla=xla,
                        paths=FastPaths.for_optimizer("adam")).describe()
    planned = planned_settings(xla, 1, "cpu", "fp32", "adam")
    assert {key: described[key] for key in planned} == planned
    assert described["path"] == ("fused" if xla else "distributed")
