"""The MLPerf score of a set of runs, and how far to trust it.

Two rulesets (docs/reference-facts.md §6-7), each in exactly one function here:
- `current` (mlperf-logging, ruleset 0.6, what the summarizer does today): the first 10 runs by
  run_start; drop the fastest and the slowest and average the rest. A non-converged run may be
  the one dropped as the slowest; more than one non-converged run gives no score.
- `v0.5` (how the published v0.5 NCF results were scored): the first 50 converged runs of 100 by
  run_start; drop the fastest and the slowest; average the rest.
With fewer runs than the ruleset asks for, the same rule is applied to what there is and the score
is marked provisional with the reason ("3 of 10 runs").

Uncertainty: a bootstrap 95% interval (resample the runs the rule looked at, re-apply the rule;
fixed numpy seed so reports are reproducible) and the number of runs needed for a chosen relative
precision from the run-time coefficient of variation. Runs are plain `Attempt`s: callers decide
beforehand which logs may be scored at all (non-compliant or truncated logs never get here).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

CURRENT = "mlperf-0.6"
V05 = "v0.5"
RULESETS = (CURRENT, V05)
CURRENT_RUNS = 10          # mlperf-logging benchmark_meta: ncf needs 10 result files
V05_CONVERGED_RUNS = 50    # v0.5: first 50 converged of 100
V05_RUNS = 100
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20181109  # fixed: the same runs always give the same interval
Z_95 = 1.959963984540054   # two-sided 95% normal quantile


@dataclass(frozen=True)
class Attempt:
    """What the rules need from one run."""

    key: str                  # identifies the run (its log path)
    start_ms: float           # run_start, orders the runs
    seconds: float | None     # time to train (run_stop - run_start)
    converged: bool


@dataclass
class Score:
    """A ruleset applied to a set of attempts."""

    ruleset: str
    seconds: float | None                  # the olympic mean; None when the rule gives no score
    provisional: bool                      # fewer runs than the ruleset asks for
    reason: str | None                     # why provisional, or why there is no score
    window: list[Attempt] = field(default_factory=list)   # the runs the rule looked at
    counted: list[str] = field(default_factory=list)      # keys averaged
    dropped: dict[str, str] = field(default_factory=dict)  # key -> "fastest" | "slowest" | "non-converged"

    @property
    def minutes(self) -> float | None:
        return None if self.seconds is None else self.seconds / 60.0


def olympic_mean(times: Sequence[float]) -> float:
    """Mean after dropping the fastest and the slowest value (needs at least 3)."""
    if len(times) < 3:
        raise ValueError("an olympic mean needs at least 3 values")
    ordered = sorted(times)
    return float(np.mean(ordered[1:-1]))


def score(ruleset: str, attempts: Sequence[Attempt]) -> Score:
    """Score `attempts` (any order) under `ruleset` (CURRENT or V05)."""
    if ruleset == CURRENT:
        return _score_current(attempts)
    if ruleset == V05:
        return _score_v05(attempts)
    raise ValueError(f"unknown ruleset {ruleset!r}")


def _by_start(attempts: Sequence[Attempt]) -> list[Attempt]:
    return sorted(attempts, key=lambda a: a.start_ms)


def _timed(a: Attempt) -> bool:
    return a.converged and a.seconds is not None


def _score_current(attempts: Sequence[Attempt]) -> Score:
    window = _by_start(attempts)[:CURRENT_RUNS]
    result = Score(CURRENT, None, len(window) < CURRENT_RUNS, None, window=window)
    notes = [f"{len(window)} of {CURRENT_RUNS} runs"] if result.provisional else []
    failed = [a for a in window if not _timed(a)]
    done = sorted((a for a in window if _timed(a)), key=lambda a: a.seconds)
    if len(failed) > 1:
        result.reason = "; ".join(notes + [f"{len(failed)} runs did not converge (at most 1 may)"])
        return result
    if len(window) < 3:
        result.reason = "; ".join(notes + ["at least 3 runs are needed to drop the fastest and slowest"])
        return result
    result.dropped[done[0].key] = "fastest"
    if failed:
        result.dropped[failed[0].key] = "non-converged"   # it takes the slowest run's place
        kept = done[1:]
    else:
        result.dropped[done[-1].key] = "slowest"
        kept = done[1:-1]
    result.counted = [a.key for a in kept]
    result.seconds = float(np.mean([a.seconds for a in kept]))
    result.reason = "; ".join(notes) or None
    return result


def _score_v05(attempts: Sequence[Attempt]) -> Score:
    ordered = _by_start(attempts)
    converged = [a for a in ordered if _timed(a)][:V05_CONVERGED_RUNS]
    # The rule looked at every run up to the 50th converged one (or all of them, if fewer converged).
    last = ordered.index(converged[-1]) + 1 if len(converged) == V05_CONVERGED_RUNS else len(ordered)
    window = ordered[:last]
    provisional = len(converged) < V05_CONVERGED_RUNS
    result = Score(V05, None, provisional, None, window=window)
    notes = ([f"{len(converged)} of {V05_CONVERGED_RUNS} converged runs, from {len(ordered)} of {V05_RUNS} runs"]
             if provisional else [])
    if last > V05_RUNS:
        notes.append(f"the {V05_CONVERGED_RUNS}th converged run is run {last}, after run {V05_RUNS}")
    if len(converged) < 3:
        result.reason = "; ".join(notes + ["at least 3 converged runs are needed"])
        return result
    done = sorted(converged, key=lambda a: a.seconds)
    result.dropped = {done[0].key: "fastest", done[-1].key: "slowest"}
    result.counted = [a.key for a in done[1:-1]]
    result.seconds = olympic_mean([a.seconds for a in done])
    result.reason = "; ".join(notes) or None
    return result


@dataclass(frozen=True)
class Interval:
    """Bootstrap percentile interval of the score."""

    low: float | None
    high: float | None
    valid_fraction: float   # share of resamples the rule could score (CURRENT: <= 1 non-converged)


def bootstrap_interval(result: Score, samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> Interval:
    """Resample the runs the rule looked at (with replacement, same count), re-apply the rule,
    and take the percentile interval of the scores. For v0.5 the resampled pool is the converged
    runs it averaged from; for the current rule it is the whole window, so the chance of drawing
    two non-converged runs (no score) shows up as valid_fraction < 1."""
    rng = np.random.default_rng(seed)
    if result.ruleset == V05:
        pool = np.array([a.seconds for a in result.window if _timed(a)], dtype=float)
    else:
        pool = np.array([a.seconds if _timed(a) else np.inf for a in result.window], dtype=float)
    if result.seconds is None or pool.size < 3:
        return Interval(None, None, 0.0)
    draws = np.sort(pool[rng.integers(0, pool.size, size=(samples, pool.size))], axis=1)
    # Sorted rows: non-converged (inf) sit last, so [1:-1] drops the fastest and the slowest, or
    # the fastest and the one non-converged run; rows with two or more inf have no score.
    valid = np.isinf(draws).sum(axis=1) <= 1
    if not valid.any():
        return Interval(None, None, 0.0)
    means = draws[valid, 1:-1].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return Interval(float(low), float(high), float(valid.mean()))


def runs_needed(times: Sequence[float], precision: float, z: float = Z_95) -> int | None:
    """Converged runs needed so that the 95% half-width of the mean run time is `precision` of it:
    n = ceil((z * CV / precision)^2), plus the two runs the olympic mean drops. None with fewer
    than 2 times (no spread to estimate)."""
    if precision <= 0:
        raise ValueError("precision must be positive")
    if len(times) < 2:
        return None
    values = np.asarray(times, dtype=float)
    cv = float(np.std(values, ddof=1) / np.mean(values))
    return int(math.ceil((z * cv / precision) ** 2)) + 2


@dataclass(frozen=True)
class Spread:
    """Distribution of a small sample (epochs to target)."""

    count: int
    minimum: float | None
    median: float | None
    mean: float | None
    maximum: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        if not values:
            return cls(0, None, None, None, None)
        arr = np.asarray(values, dtype=float)
        return cls(int(arr.size), float(arr.min()), float(np.median(arr)), float(arr.mean()), float(arr.max()))
