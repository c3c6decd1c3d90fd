"""What `run --tensorboard` costs: epoch times of interleaved runs with and without it.

Why a measurement of its own: the scalars are written by a background thread while the next epoch
trains (harness.run.tensorboard), so their cost can only show as slower epochs, and the promise is
that the median epoch time grows by less than 2%. On a shared machine epoch times drift by more
than that within minutes, so the runs come in pairs, one of each kind, in alternating order
(off/on, on/off, ...), in one session (same data, strategy and seed, so both kinds train the same
examples), and each kind's median is taken over all its epochs.

    python -m harness.measure.tensorboard_cost --system cpu --dataset synthetic-small --pairs 3 --epochs 3
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from harness.core.errors import UserError
from harness.measure.calibrate import UNREACHABLE_TARGET
from harness.run.plan import PlanOverrides
from harness.run.progress import RunDisplay
from harness.run.session import resolve, start_session


@dataclass(frozen=True)
class BoardCost:
    """Every epoch's time (training + eval, seconds) of the runs without and with the board."""

    off_epoch_s: tuple[float, ...]
    on_epoch_s: tuple[float, ...]
    pairs: int

    @property
    def off_median_s(self) -> float:
        return float(np.median(self.off_epoch_s))

    @property
    def on_median_s(self) -> float:
        return float(np.median(self.on_epoch_s))

    @property
    def overhead(self) -> float:
        """The relative growth of the median epoch time with the board (0.02 is the 2% limit)."""
        return self.on_median_s / self.off_median_s - 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "off_median_s": self.off_median_s, "on_median_s": self.on_median_s,
                "overhead": self.overhead}


def measure_board_cost(overrides: PlanOverrides, pairs: int = 3) -> BoardCost:
    """`pairs` pairs of runs of `overrides` (every run trains all its max epochs), with and without
    TensorBoard scalars; their results and event files go to a temporary folder, removed after."""
    if pairs < 1:
        raise UserError(f"--pairs must be at least 1, got {pairs}.")
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="ncf-tensorboard-cost-") as root:
        profile, plan = resolve(replace(overrides, results_dir=root, runs=1))
        plan.target = UNREACHABLE_TARGET
        session = start_session(profile, plan, RunDisplay(quiet=True))
        for i in range(pairs):
            for board in ((False, True) if i % 2 == 0 else (True, False)):
                plan.tensorboard_dir = str(Path(root) / "tensorboard") if board else None
                outcome = session.run_once(plan.seeds[0])
                times[board].extend(e.train_s + e.eval_s for e in outcome.epochs)
    return BoardCost(tuple(times[False]), tuple(times[True]), pairs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.measure.tensorboard_cost", description=__doc__.split("\n")[0])
    p.add_argument("--system", default="cpu")
    p.add_argument("--dataset", default="synthetic-small")
    p.add_argument("--pairs", type=int, default=3, help="pairs of runs, one with and one without (default 3)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        cost = measure_board_cost(PlanOverrides(system=args.system, dataset=args.dataset, seed=args.seed,
                                                max_epochs=args.epochs), args.pairs)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(cost.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
