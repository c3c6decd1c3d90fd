"""The measuring half of `run_benchmark.py calibrate`: seeds trained without early stop, a target suggested.

Why apart from the command (harness.commands.calibrate, whose docstring says why targets are
calibrated this way): the training, the suggestion and the comparison with the peer's curves
take typed values and return one report, which the command prints as tables or JSON.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from harness.measure.convergence import Curve, compare
from harness.core.writable import scratch_dir
from harness.measure.peer import peer_ratings, run_peer_mlsmall
from harness.run.plan import PlanOverrides
from harness.run.session import resolve, start_session

if TYPE_CHECKING:
    from harness.run.progress import RunDisplay

# HR@10 never exceeds 1, so runs with this target train for the whole epoch budget.
UNREACHABLE_TARGET = 1.01


def suggest_target(best_per_seed: list[float], quantile: float) -> float:
    """The `quantile` quantile of the per-seed best HR@10, rounded down to a multiple of 0.005."""
    value = float(np.quantile(np.asarray(best_per_seed), quantile, method="lower"))
    return math.floor(value / 0.005 + 1e-9) * 0.005


def success_rate(curves: list[list[float]], target: float) -> float:
    """Share of seeds whose HR@10 reached `target` at some epoch."""
    return sum(1 for c in curves if c and max(c) >= target) / len(curves)


def run_calibration(overrides: PlanOverrides, quantile: float, display: RunDisplay, peer_runs: int = 0,
                    peer_env: dict[str, str] | None = None) -> dict:
    """Train every planned seed of `overrides` for the whole epoch budget, and the peer `peer_runs`
    times on the same ratings; the curves, the suggested target and the success rates.

    The runs go under `overrides.results_dir`, else under a throw-away root (`results_root` None).
    """
    with scratch_dir("ncf-calibrate-") as scratch:
        return _calibrate(replace(overrides, results_dir=overrides.results_dir or scratch), quantile, display,
                          peer_runs, peer_env, keep=overrides.results_dir is not None)


def _calibrate(overrides: PlanOverrides, quantile: float, display: RunDisplay, peer_runs: int,
               peer_env: dict[str, str] | None, keep: bool) -> dict:
    """`run_calibration` once its results root is settled (`keep`: the user's, reported back).

    The plan is resolved (and so validated) before the peer's ratings are read: a bad flag is
    refused before any data work.
    """
    profile, plan = resolve(overrides)
    ratings = peer_ratings(overrides.data_dir, overrides.cache_dir) if peer_runs else None
    current_target = plan.target
    plan.target = UNREACHABLE_TARGET  # no early stop: the whole curve is the measurement
    session = start_session(profile, plan, display)
    ours = []
    for i, seed in enumerate(plan.seeds):
        display.run_header(i, len(plan.seeds), seed)
        outcome = session.run_once(seed)
        ours.append(Curve("ours", f"seed {seed}", tuple(e.hit_rate for e in outcome.epochs)))
    curves = [list(c.hit_rates) for c in ours]
    peer_curves = [Curve("peer", f"peer seed {i}", tuple(run_peer_mlsmall(ratings, plan.max_epochs, seed=i,
                                                                         env=peer_env).hr_per_epoch))
                   for i in range(peer_runs)]
    best = [c.best for c in ours]
    suggested = suggest_target(best, quantile)
    result = {
        "dataset": plan.dataset, "system": plan.system, "seeds": plan.seeds, "max_epochs": plan.max_epochs,
        "hyperparameters": {k: getattr(plan, k) for k in ("batch_size", "learning_rate", "beta1", "beta2", "epsilon")},
        "curves": curves, "best_per_seed": best, "quantile": quantile,
        "current_target": current_target, "success_rate_current": success_rate(curves, current_target),
        "suggested_target": suggested, "success_rate_suggested": success_rate(curves, suggested),
        "epochs_to_suggested": [c.epochs_to(suggested) for c in ours],
        "results_root": plan.results_root if keep else None,
    }
    if peer_curves:
        result["peer_curves"] = [list(c.hit_rates) for c in peer_curves]
        result["peer_environment"] = peer_env
        result["comparison"] = compare(ours, peer_curves, current_target)
    return result
