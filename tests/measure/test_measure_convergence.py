"""Convergence comparison (harness.measure.convergence): epochs to target, means, Welch intervals."""
from __future__ import annotations

import math

import pytest

from harness.measure.convergence import Curve, compare, side_summary, welch_interval


def test_a_curve_knows_its_best_and_its_first_epoch_at_the_target() -> None:
    curve = Curve("ours", "seed 0", (0.18, 0.29, 0.2899, 0.31, 0.30))
    assert curve.best == 0.31
    assert curve.epochs_to(0.29) == 2 and curve.epochs_to(0.30) == 4 and curve.epochs_to(0.32) is None


def test_welch_interval_matches_the_formula() -> None:
    from scipy import stats

    ours, peer = [7.0, 8.0, 8.0, 9.0, 7.0], [6.0, 7.0, 7.0]
    got = welch_interval(ours, peer, 0.95)
    va, vb = 0.7 / 5, 1 / 3 / 3                       # sample variances over n (ddof 1)
    df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert got.difference == pytest.approx(7.8 - 20 / 3)
    assert (got.low, got.high) == (pytest.approx(got.difference - half), pytest.approx(got.difference + half))
    assert (got.n_ours, got.n_peer) == (5, 3)


def test_welch_interval_edges() -> None:
    assert welch_interval([1.0], [1.0, 2.0]) is None
    flat = welch_interval([7.0, 7.0], [6.0, 6.0])
    assert (flat.difference, flat.low, flat.high) == (1.0, 1.0, 1.0)


def test_compare_counts_runs_that_missed_and_orders_ours_minus_peer() -> None:
    ours = [Curve("ours", f"seed {i}", c) for i, c in enumerate([(0.2, 0.3), (0.2, 0.28), (0.29, 0.31)])]
    peer = [Curve("peer", f"peer seed {i}", c) for i, c in enumerate([(0.3, 0.32), (0.25, 0.33)])]
    report = compare(ours, peer, 0.29)
    assert report["ours"] == side_summary(ours, 0.29)
    assert report["ours"]["runs"] == 3 and report["ours"]["reached"] == 2
    assert report["ours"]["mean_epochs_to_target"] == 1.5 and report["peer"]["mean_epochs_to_target"] == 1.5
    assert report["best_hr_difference"]["difference"] == pytest.approx((0.3 + 0.28 + 0.31) / 3 - 0.325)
