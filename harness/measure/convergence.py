"""Convergence side by side: HR@10 curves of ours and of the peer, and the interval of their difference.

Why: speed per epoch is only half of time to target; the other half is how many epochs a run needs.
Epochs to the target vary about 2x with the seed for every implementation here, so one run of
each says nothing. This module turns N curves of ours and M of the peer (same data, same
hyperparameters, full epoch budget) into per-side means and a two-sample interval (Welch's t,
unequal variances) for the difference of best HR@10 and of epochs to the target, the figures a
convergence-parity claim rests on. It is pure Python: `calibrate --peer-runs` feeds it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    """One run's HR@10 after each epoch."""

    who: str                     # "ours" | "peer"
    label: str                   # e.g. "seed 3"
    hit_rates: tuple[float, ...]

    @property
    def best(self) -> float:
        return max(self.hit_rates)

    def epochs_to(self, target: float) -> int | None:
        """The first epoch (1-based) whose HR@10 reached `target`; None if none did."""
        return next((n for n, hr in enumerate(self.hit_rates, start=1) if hr >= target), None)


@dataclass(frozen=True)
class Interval:
    """mean(ours) - mean(peer) and its two-sample confidence interval (Welch)."""

    difference: float
    low: float
    high: float
    confidence: float
    n_ours: int
    n_peer: int


def welch_interval(ours: list[float], peer: list[float], confidence: float = 0.95) -> Interval | None:
    """Welch's t interval for mean(ours) - mean(peer); None with fewer than two values a side.

    Two sides without any spread (every value equal) give a zero-width interval at the difference.
    """
    if len(ours) < 2 or len(peer) < 2:
        return None
    from scipy import stats

    a, b = np.asarray(ours, np.float64), np.asarray(peer, np.float64)
    difference = float(a.mean() - b.mean())
    if a.var() == 0 and b.var() == 0:
        return Interval(difference, difference, difference, confidence, a.size, b.size)
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    return Interval(difference, float(low), float(high), confidence, a.size, b.size)


def side_summary(curves: list[Curve], target: float) -> dict:
    """Runs, mean best HR@10, how many reached `target` and their mean epochs to it."""
    reached = [e for e in (c.epochs_to(target) for c in curves) if e is not None]
    return {"runs": len(curves), "mean_best_hr": float(np.mean([c.best for c in curves])) if curves else None,
            "reached": len(reached), "mean_epochs_to_target": float(np.mean(reached)) if reached else None}


def compare(ours: list[Curve], peer: list[Curve], target: float, confidence: float = 0.95) -> dict:
    """Both sides' summaries and the intervals of (ours - peer) in best HR@10 and epochs to target.

    Epochs to target are compared over the runs that reached it; the counts say how many did not.
    """
    def reached(curves: list[Curve]) -> list[float]:
        return [float(e) for e in (c.epochs_to(target) for c in curves) if e is not None]

    best = welch_interval([c.best for c in ours], [c.best for c in peer], confidence)
    epochs = welch_interval(reached(ours), reached(peer), confidence)
    return {"target": target, "ours": side_summary(ours, target), "peer": side_summary(peer, target),
            "best_hr_difference": asdict(best) if best else None,
            "epochs_to_target_difference": asdict(epochs) if epochs else None}
