"""`run_benchmark.py calibrate`: measure where a dataset's HR@10 target belongs.

MLPerf set 0.635 for ml-20m at a value the reference reaches in most seeds, near the plateau of
its HR@10 curve. For the other sets the harness does the same, as a documented command rather
than a guess: train several seeds with the dataset's default hyperparameters for the full epoch
budget (no early stop), print every seed's HR@10 curve, and suggest the target as the
`--quantile` quantile of the per-seed best HR@10 (default 0.2: four seeds in five reach it),
rounded down to 0.005. The success rate at the current and at the suggested target is printed
beside it. Runs are written to a throw-away results root unless --results-dir is given.

With `--peer-runs N` (ml-latest-small only) the TF Model Garden peer trains the same ratings N
times for the same epoch budget, and the report puts its curves beside ours with the means and a
two-sample interval for the difference in best HR@10 and in epochs to the target
(harness.measure.convergence): the convergence comparison behind the parity claim.

The training and the suggestion are harness.measure.calibrate; this module holds the flags,
their checks and the tables.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import TYPE_CHECKING

from harness.core.errors import UserError
from harness.measure.calibrate import run_calibration
from harness.measure.convergence import Curve
from harness.measure.peer import PEER_DATASET, PEER_ENV_HELP, parse_peer_env
from harness.run.flags import add_run_arguments, in_range, nonnegative_int, overrides_from
from harness.run.plan import SEED_LIMIT, Range, check_seed

if TYPE_CHECKING:
    from harness.run.progress import RunDisplay


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate", help="train several seeds without early stop and suggest a dataset's HR@10 target",
        description=__doc__.split("\n\n")[1].replace("\n", " "))
    add_run_arguments(p)
    p.add_argument("--seeds", type=in_range(Range(2, SEED_LIMIT - 1)), default=5,
                   help="number of seeds (runs, >= 2), from --seed (default 0; seed + seeds - 1 < 2^31)")
    p.add_argument("--quantile", type=in_range(Range(0, 1, low_open=True, high_open=True, integer=False)),
                   default=0.2, help="suggested target = this quantile of per-seed best HR@10, in (0, 1) (default 0.2)")
    p.add_argument("--peer-runs", type=nonnegative_int, default=0, metavar="N",
                   help=f"also train the TF Model Garden peer N times on the same ratings ({PEER_DATASET} only) "
                        "and compare the curves (default 0)")
    p.add_argument("--peer-env", action="append", default=[], metavar="KEY=VALUE", help="with --peer-runs: " + PEER_ENV_HELP)
    p.add_argument("--results-dir", help="keep the calibration runs under this submission root")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(handler=calibrate)


def calibrate(args: argparse.Namespace) -> int:
    from harness.run.progress import RunDisplay

    first_seed = 0 if args.seed is None else args.seed   # --seeds, --quantile, --peer-runs: ranges in their types
    check_seed(first_seed, args.seeds, runs_flag="--seeds")
    if args.peer_runs and args.dataset != PEER_DATASET:
        raise UserError(f"the peer trains only {PEER_DATASET}; use --dataset {PEER_DATASET} or drop --peer-runs.")
    if args.peer_env and not args.peer_runs:
        raise UserError("--peer-env needs --peer-runs 1 or more.")
    peer_env = parse_peer_env(args.peer_env)
    overrides = replace(overrides_from(args), runs=args.seeds, seed=first_seed)
    display = RunDisplay(quiet=args.json)
    result = run_calibration(overrides, args.quantile, display, args.peer_runs, peer_env)
    if args.json:
        print(json.dumps(result))
        return 0
    _print_tables(display, result)
    return 0


def _print_tables(display: RunDisplay, result: dict) -> None:
    from rich.table import Table

    rows = [(f"seed {seed}", curve) for seed, curve in zip(result["seeds"], result["curves"])]
    rows += [(f"peer seed {i}", curve) for i, curve in enumerate(result.get("peer_curves", []))]
    epochs = max(len(c) for _, c in rows)
    target = result["current_target"]
    table = Table(title=f"HR@10 per epoch, {result['dataset']} ({len(result['seeds'])} seeds"
                        + (f", {len(result['peer_curves'])} peer runs)" if "peer_curves" in result else ")"))
    table.add_column("run")
    for e in range(1, epochs + 1):
        table.add_column(str(e), justify="right")
    table.add_column("best", justify="right")
    table.add_column(f"epochs to {target}", justify="right")
    for label, curve in rows:
        reached = Curve("", label, tuple(curve)).epochs_to(target)
        table.add_row(label, *[f"{h:.3f}" for h in curve], f"{max(curve):.3f}", str(reached or "-"))
    display.console.print(table)
    if "comparison" in result:
        display.console.print(_comparison_text(result["comparison"]))
    display.console.print(
        f"current target {result['current_target']}: success rate {result['success_rate_current']:.0%}\n"
        f"suggested target {result['suggested_target']:.3f} (quantile {result['quantile']} of best HR@10): "
        f"success rate {result['success_rate_suggested']:.0%}, epochs to reach it "
        f"{result['epochs_to_suggested']}")


def _comparison_text(comparison: dict) -> str:
    """Per-side means and the (ours - peer) intervals, one line each."""
    lines = []
    for who in ("ours", "peer"):
        side = comparison[who]
        epochs = f"{side['mean_epochs_to_target']:.2f}" if side["mean_epochs_to_target"] is not None else "-"
        lines.append(f"{who}: {side['runs']} runs, mean best HR@10 {side['mean_best_hr']:.4f}, "
                     f"{side['reached']} reached {comparison['target']}, mean epochs to it {epochs}")
    for key, name, digits in (("best_hr_difference", "best HR@10", 4), ("epochs_to_target_difference",
                                                                       "epochs to target", 2)):
        interval = comparison[key]
        if interval is None:
            lines.append(f"ours - peer, {name}: too few runs for an interval")
            continue
        lines.append(f"ours - peer, {name}: {interval['difference']:+.{digits}f} "
                     f"({interval['confidence']:.0%} Welch interval {interval['low']:+.{digits}f} .. "
                     f"{interval['high']:+.{digits}f})")
    return "\n".join(lines)
