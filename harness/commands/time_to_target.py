"""`run_benchmark.py time-to-target`: its flags, their checks, and the table of runs and ratios.

Why apart from harness.measure.time_to_target: alternating our runs with the peer's and
comparing their times is a library that takes typed values and returns a report; which flag
combinations make sense and how the report reads on a terminal belong to the command.
"""
from __future__ import annotations

import argparse
import json

from harness.core.errors import UserError
from harness.core.writable import require_writable_dir
from harness.measure.peer import PEER_DATASET, PEER_ENV_HELP, parse_peer_env
from harness.measure.time_to_target import measure_time_to_target
from harness.results.tree import RESULTS_FLAG
from harness.run.flags import CACHE_DIR_HELP, SYSTEM_HELP, nonnegative_int, positive_int
from harness.run.plan import PlanOverrides, seed_range


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    allowed = seed_range()   # each seed is a run of its own
    wrong = [seed for seed in seeds if not allowed.contains(seed)]
    if wrong:
        raise argparse.ArgumentTypeError(f"each seed must be {allowed.describe()}, got {wrong[0]}")
    return seeds


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "time-to-target", help="time to the HR@10 target over several seeds, alternated with TF Model Garden peer runs",
        description="Run this harness once per seed and the TF Model Garden NCF peer on ml-latest-small (in a venv "
                    "of its own, built on first use) several times, alternating, and compare their times to the "
                    "same HR@10 target.")
    p.add_argument("--system", required=True, help=SYSTEM_HELP)
    p.add_argument("--dataset", default=PEER_DATASET, help=f"dataset of our runs (default {PEER_DATASET}, the only "
                                                           "one the peer trains)")
    p.add_argument("--data-dir", help="folder with <name>.zip or an extracted <name>/ folder (also the peer's ratings)")
    p.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2, 3], help="our runs' seeds, comma-separated (default 0,1,2,3)")
    p.add_argument("--peer-runs", type=nonnegative_int, default=3, help="runs of the peer (>= 0; default 3; 0: ours only)")
    p.add_argument("--peer-epochs", type=positive_int, default=12, help="epochs per peer run (>= 1; default 12)")
    p.add_argument("--peer-env", action="append", default=[], metavar="KEY=VALUE", help=PEER_ENV_HELP)
    p.add_argument("--results-dir", help="keep our runs' logs here, one submission root per seed "
                                         "(default: a temporary folder, removed afterwards)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=time_to_target)


def time_to_target(args: argparse.Namespace) -> int:
    if args.peer_runs and args.dataset != PEER_DATASET:
        raise UserError(f"the peer trains only {PEER_DATASET}; use --dataset {PEER_DATASET} or --peer-runs 0.")
    if args.peer_env and not args.peer_runs:
        raise UserError("--peer-env needs peer runs; drop it or give --peer-runs 1 or more.")
    peer_env = parse_peer_env(args.peer_env)   # flags first, then what is on disk
    if args.results_dir:   # now, not as the first seed's run failing in its child process
        require_writable_dir(args.results_dir, RESULTS_FLAG)
    ours = PlanOverrides(system=args.system, dataset=args.dataset, data_dir=args.data_dir, cache_dir=args.cache_dir)
    report = measure_time_to_target(ours, args.seeds, args.peer_runs, args.peer_epochs, peer_env,
                                    keep_in=args.results_dir)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def format_report(report: dict) -> str:
    """The runs as a table, then each side's means and the ratios, as the terminal shows them."""
    from io import StringIO

    from rich.table import Table

    from harness.core.console import make_console

    extra = "".join(f", peer with {k}={v}" for k, v in report.get("peer_environment", {}).items())
    table = Table(title=f"time to HR@10 >= {report['target']} on {report['dataset']}{extra}")
    for column in ("who", "run", "epochs to target", "time to target (s)", "best HR@10"):
        table.add_column(column)
    for run in report["runs"]:
        table.add_row(run["who"], run["label"],
                      str(run["epochs_to_target"]) if run["seconds"] is not None else f"not in {run['epochs_run']}",
                      f"{run['seconds']:.1f}" if run["seconds"] is not None else "-",
                      f"{run['best_hr']:.4f}" if run["best_hr"] is not None else "-")
    buffer = StringIO()
    console = make_console(file=buffer)
    console.print(table)
    for who in ("ours", "peer"):
        side = report[who]
        if side["runs"]:
            mean = f"{side['mean_s']:.1f} s" if side["mean_s"] is not None else "-"
            olympic = f"; olympic mean {side['olympic_mean_s']:.1f} s" if side["olympic_mean_s"] is not None else ""
            console.print(f"{who}: {side['reached']} of {side['runs']} runs reached the target; mean {mean}{olympic}")
    ratios = report["ratios"]
    if ratios:
        olympic = (f"olympic mean against olympic mean {ratios['olympic_vs_olympic']:.2f}x; "
                   if "olympic_vs_olympic" in ratios else "")
        console.print(f"ours / peer: mean against mean {ratios['mean_vs_mean']:.2f}x; {olympic}"
                      f"our slowest against the peer's fastest {ratios['our_slowest_vs_peer_fastest']:.2f}x")
    return buffer.getvalue().rstrip()
