"""Scoring rules: olympic mean, the current (mlperf-logging 0.6) rule with its non-converged
allowance, the v0.5 rule (first 50 converged of 100), provisional scores, the bootstrap interval
and the runs-needed estimate."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from harness.report import scoring
from harness.report.scoring import Attempt


def attempts(times, failed=(), starts=None):
    """Attempt per time; indices in `failed` did not converge; run_start defaults to list order."""
    starts = starts if starts is not None else range(len(times))
    return [Attempt(f"r{i}", float(start), float(t), i not in failed)
            for i, (t, start) in enumerate(zip(times, starts))]


def test_olympic_mean_drops_fastest_and_slowest():
    assert scoring.olympic_mean([5.0, 1.0, 9.0, 3.0]) == pytest.approx(4.0)
    assert scoring.olympic_mean([2.0, 2.0, 2.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        scoring.olympic_mean([1.0, 2.0])


def test_current_rule_all_converged():
    times = [10, 12, 11, 30, 9, 13, 14, 12, 11, 10]
    result = scoring.score(scoring.CURRENT, attempts(times))
    expected = statistics.mean(sorted(times)[1:-1])
    assert result.seconds == pytest.approx(expected)
    assert not result.provisional and result.reason is None
    assert result.dropped == {"r4": "fastest", "r3": "slowest"}
    assert len(result.counted) == 8


def test_current_rule_one_non_converged_run_is_the_dropped_slowest():
    times = [10, 12, 11, 30, 9, 13, 14, 12, 11, 10]
    result = scoring.score(scoring.CURRENT, attempts(times, failed={6}))
    converged = sorted(t for i, t in enumerate(times) if i != 6)
    # The slowest converged run (30) is kept: the non-converged run took its place.
    assert result.seconds == pytest.approx(statistics.mean(converged[1:]))
    assert result.dropped == {"r4": "fastest", "r6": "non-converged"}
    assert "r3" in result.counted


def test_current_rule_two_non_converged_runs_give_no_score():
    result = scoring.score(scoring.CURRENT, attempts([10] * 10, failed={1, 7}))
    assert result.seconds is None
    assert "2 runs did not converge" in result.reason


def test_current_rule_takes_the_first_ten_by_run_start_not_list_order():
    times = [10.0] * 9 + [50.0, 99.0, 99.0]
    starts = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    # The two 99 s runs started last and fall outside the window even when listed first.
    shuffled = attempts(times, starts=starts)[::-1]
    result = scoring.score(scoring.CURRENT, shuffled)
    assert {a.key for a in result.window} == {f"r{i}" for i in range(10)}
    assert result.seconds == pytest.approx(10.0)


def test_current_rule_with_few_runs_is_provisional_with_reason():
    result = scoring.score(scoring.CURRENT, attempts([10, 20, 30]))
    assert result.provisional and result.reason == "3 of 10 runs"
    assert result.seconds == pytest.approx(20.0)
    too_few = scoring.score(scoring.CURRENT, attempts([10, 20]))
    assert too_few.seconds is None and too_few.provisional
    assert "2 of 10 runs" in too_few.reason


def test_v05_rule_first_fifty_converged_by_run_start():
    rng = np.random.default_rng(3)
    times = rng.uniform(20, 40, size=100)
    failed = set(range(0, 100, 3))                 # 34 failures, 66 converged
    starts = rng.permutation(100).astype(float)    # run_start order differs from list order
    runs = attempts(times, failed=failed, starts=starts)
    result = scoring.score(scoring.V05, runs)
    by_start = sorted(runs, key=lambda a: a.start_ms)
    first50 = [a.seconds for a in by_start if a.converged][:50]
    assert result.seconds == pytest.approx(statistics.mean(sorted(first50)[1:-1]))
    assert not result.provisional
    assert len(result.counted) == 48


def test_v05_rule_with_fewer_converged_runs_is_provisional():
    result = scoring.score(scoring.V05, attempts([30, 20, 25, 99, 22], failed={3}))
    assert result.provisional
    assert result.reason == "4 of 50 converged runs, from 5 of 100 runs"
    assert result.seconds == pytest.approx(statistics.mean([22, 25]))
    # Non-converged runs never count against v0.5 scores; two converged runs give none.
    assert scoring.score(scoring.V05, attempts([30, 20, 99], failed={2})).seconds is None


def test_unknown_ruleset_is_refused():
    with pytest.raises(ValueError):
        scoring.score("v9", attempts([1, 2, 3]))


def test_bootstrap_interval_is_reproducible_and_brackets_the_score():
    times = [26.5, 30.4, 29.4, 27.7, 25.1, 27.7, 29.0, 27.8, 29.2, 26.3]
    result = scoring.score(scoring.CURRENT, attempts(times))
    first = scoring.bootstrap_interval(result)
    again = scoring.bootstrap_interval(result)
    assert first == again
    assert first.low < result.seconds < first.high
    assert min(times) <= first.low and first.high <= max(times)
    assert first.valid_fraction == 1.0


def test_bootstrap_counts_resamples_without_a_score_under_the_current_rule():
    times = [10, 12, 11, 13, 9, 13, 14, 12, 11, 10]
    result = scoring.score(scoring.CURRENT, attempts(times, failed={2}))
    interval = scoring.bootstrap_interval(result)
    # Each resample of 10 holds the failed run k ~ Binomial(10, 0.1) times; k >= 2 has no score.
    p_ok = 0.9 ** 10 + 10 * 0.1 * 0.9 ** 9
    assert interval.valid_fraction == pytest.approx(p_ok, abs=0.05)
    assert interval.low is not None and interval.low <= result.seconds <= interval.high


def test_bootstrap_of_no_score_is_empty():
    result = scoring.score(scoring.CURRENT, attempts([10, 11]))
    assert scoring.bootstrap_interval(result) == scoring.Interval(None, None, 0.0)


def test_runs_needed_follows_the_coefficient_of_variation():
    times = [100.0, 110.0, 90.0, 105.0, 95.0]
    cv = statistics.stdev(times) / statistics.mean(times)
    needed = scoring.runs_needed(times, 0.05)
    assert needed == math.ceil((1.959964 * cv / 0.05) ** 2) + 2   # z of a two-sided 95% interval
    assert scoring.runs_needed(times, 0.01) > needed
    assert scoring.runs_needed([5.0], 0.05) is None
    with pytest.raises(ValueError):
        scoring.runs_needed(times, 0.0)


def test_spread_summarises_epochs_to_target():
    spread = scoring.Spread.of([14, 18, 16, 15])
    assert (spread.count, spread.minimum, spread.median, spread.maximum) == (4, 14, 15.5, 18)
    assert spread.mean == pytest.approx(15.75)
    assert scoring.Spread.of([]).count == 0
