"""`run_benchmark.py time-to-target`: our time to the quality target against the peer's, in one invocation.

Why: epochs to the target vary about 2x with the seed, for this harness and for the TF Model
Garden peer alike (ml-latest-small, batch 2,048: 6-11 epochs here, 6-9 for the peer), and both
machines' speed drifts by ±15% between hours. One run of each says more about the seed than
about the software. This command alternates runs of ours (one per seed, each a fresh
`run_benchmark.py run` process, timed run_start to run_stop from its MLPerf log) with runs of the
peer (harness.measure.peer's ml-latest-small run, peer run i with seed i - 1, timed as the sum
of its per-epoch train and eval times up to the first epoch at or above the same target, its
start-up excluded), so that drift touches both, and reports every run plus the ratios of their
means, of their olympic means (MLPerf's score) and of our slowest to the peer's fastest.

The peer trains only ml-latest-small, so with peer runs the dataset must be ml-latest-small;
`--peer-runs 0` times our runs alone on any dataset. The peer reads the ratings our runs read:
from --data-dir, else the zip our first run downloaded into the cache.
"""
from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from harness.core.paths import RUN_BENCHMARK
from harness.core.errors import UserError
from harness.measure.peer import (PEER_DATASET, PEER_ENV_HELP, PeerCurve, parse_peer_env, peer_ratings, read_curve,
                                  run_peer_mlsmall)
from harness.report.scoring import olympic_mean

RUN_TIMEOUT_S = 3600


@dataclass(frozen=True)
class TimedRun:
    """One run of ours or of the peer: whether and when it reached the target."""

    who: str                        # "ours" | "peer"
    label: str                      # "seed 3" | "run 2"
    epochs_run: int
    epochs_to_target: int | None    # None: the target was not reached
    seconds: float | None           # time to the target; None when not reached
    best_hr: float | None
    log: str

    @property
    def reached(self) -> bool:
        return self.seconds is not None


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "time-to-target", help="time to the HR@10 target over several seeds, alternated with TF Model Garden peer runs",
        description="Run this harness once per seed and the TF Model Garden NCF peer on ml-latest-small (in a venv "
                    "of its own, built on first use) several times, alternating, and compare their times to the "
                    "same HR@10 target.")
    p.add_argument("--system", required=True, help="system profile name (see `systems`) or path to a profile JSON")
    p.add_argument("--dataset", default=PEER_DATASET, help=f"dataset of our runs (default {PEER_DATASET}, the only "
                                                           "one the peer trains)")
    p.add_argument("--data-dir", help="folder with <name>.zip or an extracted <name>/ folder (also the peer's ratings)")
    p.add_argument("--cache-dir", help="prepared-data cache (default ~/.cache/ncf-benchmark or $NCF_CACHE_DIR)")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2, 3], help="our runs' seeds, comma-separated (default 0,1,2,3)")
    p.add_argument("--peer-runs", type=int, default=3, help="runs of the peer (default 3; 0: ours only)")
    p.add_argument("--peer-epochs", type=int, default=12, help="epochs per peer run (default 12)")
    p.add_argument("--peer-env", action="append", default=[], metavar="KEY=VALUE", help=PEER_ENV_HELP)
    p.add_argument("--results-dir", help="keep our runs' logs here, one submission root per seed "
                                         "(default: a temporary folder, removed afterwards)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=time_to_target)


def time_to_target(args: argparse.Namespace) -> int:
    if args.peer_runs < 0 or args.peer_epochs < 1:
        raise UserError(f"--peer-runs must be >= 0 and --peer-epochs >= 1, got {args.peer_runs} and {args.peer_epochs}.")
    if args.peer_runs and args.dataset != PEER_DATASET:
        raise UserError(f"the peer trains only {PEER_DATASET}; use --dataset {PEER_DATASET} or --peer-runs 0.")
    if args.peer_env and not args.peer_runs:
        raise UserError("--peer-env needs peer runs; drop it or give --peer-runs 1 or more.")
    peer_env = parse_peer_env(args.peer_env)   # flags first, then what is on disk
    target = _target(args)
    # Without --data-dir the ratings are the zip our first run downloads, so they are looked up then.
    ratings = functools.cache(lambda: peer_ratings(args.data_dir, args.cache_dir))
    if args.peer_runs and args.data_dir:
        ratings()   # a --data-dir without them fails now rather than after our first run
    with tempfile.TemporaryDirectory(prefix="ncf-time-to-target-") as scratch:
        root = Path(args.results_dir) if args.results_dir else Path(scratch)
        runs = alternate(args.seeds, args.peer_runs,
                         lambda seed: run_ours(args, seed, root / f"seed{seed}"),
                         lambda index: run_peer(index, args.peer_epochs, target, ratings(), peer_env))
    report = summarize(runs, target, args.dataset)
    report["peer_environment"] = peer_env
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


def _target(args: argparse.Namespace) -> float:
    """The HR@10 target our runs use, which the peer's runs are held to as well."""
    from harness.commands.run import resolve

    plan_args = argparse.Namespace(**{**vars(_run_parser().parse_args(["--system", args.system])),
                                      "dataset": args.dataset, "data_dir": args.data_dir,
                                      "cache_dir": args.cache_dir})
    _, plan = resolve(plan_args)
    return float(plan.target)


def _run_parser() -> argparse.ArgumentParser:
    from harness.commands.run import add_run_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_run_arguments(parser)
    return parser


def alternate(seeds: list[int], peer_runs: int, ours: Callable[[int], TimedRun],
              peer: Callable[[int], TimedRun]) -> list[TimedRun]:
    """Ours with each seed and the peer `peer_runs` times, taking turns: ours, peer, ours, ..."""
    runs = []
    for i in range(max(len(seeds), peer_runs)):
        if i < len(seeds):
            runs.append(ours(seeds[i]))
        if i < peer_runs:
            runs.append(peer(i + 1))
    return runs


def run_ours(args: argparse.Namespace, seed: int, root: Path) -> TimedRun:
    """One `run_benchmark.py run` in its own process; its time and epochs from its MLPerf log.

    The run writes into `root` like any run (a second invocation with the same root adds a
    result file beside the first); the newest log is this run's.
    """
    from harness.results.log_parser import parse_log
    from harness.results.run_record import run_record

    command = [sys.executable, str(RUN_BENCHMARK), "run", "--system", args.system, "--dataset", args.dataset,
               "--seed", str(seed), "--results-dir", str(root), "--quiet"]
    for flag, value in (("--data-dir", args.data_dir), ("--cache-dir", args.cache_dir)):
        if value:
            command += [flag, value]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    logs = sorted(root.glob("results/*/ncf/result_*.txt"), key=lambda path: path.stat().st_mtime)
    if proc.returncode != 0 or not logs:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-2:])
        raise UserError(f"our run with seed {seed} failed (exit {proc.returncode}): {tail}")
    record = run_record(parse_log(logs[-1]), args.system)
    seconds = record.time_to_train_s if record.converged else None
    return TimedRun("ours", f"seed {seed}", len(record.epochs),
                    record.epochs_to_target if seconds is not None else None, seconds, record.best_hr, str(logs[-1]))


def run_peer(index: int, epochs: int, target: float, ratings: Path,
             env: dict[str, str] | None = None) -> TimedRun:
    """Peer run `index` (counted from 1; its seed is index - 1) on `ratings`, in the user's environment plus
    `env`; its time to `target`."""
    return peer_run(run_peer_mlsmall(ratings, epochs, seed=index - 1, env=env), index, target)


def peer_run_from_log(log: Path, index: int, target: float) -> TimedRun:
    """`peer_run` of an earlier peer run, from its log."""
    return peer_run(read_curve(log), index, target)


def peer_run(curve: PeerCurve, index: int, target: float) -> TimedRun:
    """The peer's time to `target`: its train + eval seconds summed up to the first epoch at or above it."""
    hr, seconds = curve.hr_per_epoch, curve.epoch_seconds
    reached = next((i for i, value in enumerate(hr) if value >= target), None)
    return TimedRun("peer", f"run {index}", len(hr), None if reached is None else reached + 1,
                    None if reached is None else float(sum(seconds[:reached + 1])),
                    max(hr) if hr else None, str(curve.log))


def summarize(runs: list[TimedRun], target: float, dataset: str) -> dict:
    """Every run, and ours against the peer's: ratios of the means, of the olympic means (MLPerf's
    score: the fastest and the slowest run dropped; with 3 or more runs on both sides) and of our
    slowest to its fastest.

    All of them are over the runs that reached the target; how many did not is reported beside them.
    """
    def side(who: str) -> dict:
        mine = [run for run in runs if run.who == who]
        times = [run.seconds for run in mine if run.reached]
        return {"runs": len(mine), "reached": len(times), "mean_s": sum(times) / len(times) if times else None,
                "olympic_mean_s": olympic_mean(times) if len(times) >= 3 else None,
                "fastest_s": min(times) if times else None, "slowest_s": max(times) if times else None}

    ours, peer = side("ours"), side("peer")
    ratios = {}
    if ours["reached"] and peer["reached"]:
        ratios = {"mean_vs_mean": ours["mean_s"] / peer["mean_s"],
                  "our_slowest_vs_peer_fastest": ours["slowest_s"] / peer["fastest_s"]}
        if ours["olympic_mean_s"] is not None and peer["olympic_mean_s"] is not None:
            ratios["olympic_vs_olympic"] = ours["olympic_mean_s"] / peer["olympic_mean_s"]
    return {"dataset": dataset, "target": target, "runs": [asdict(run) for run in runs],
            "ours": ours, "peer": peer, "ratios": ratios}


def _table(report: dict) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

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
    console = Console(file=buffer, width=100)
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
