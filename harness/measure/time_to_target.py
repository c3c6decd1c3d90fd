"""What `run_benchmark.py time-to-target` measures: our time to the quality target against the peer's.

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
from --data-dir, else the zip our first run downloaded into the cache. The command's flags and
table are harness.commands.time_to_target.
"""
from __future__ import annotations

import functools
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from harness.core.paths import RUN_BENCHMARK
from harness.core.errors import UserError
from harness.core.writable import scratch_dir
from harness.measure.peer import PeerCurve, peer_ratings, read_curve, run_peer_mlsmall
from harness.report.scoring import olympic_mean
from harness.run.plan import PlanOverrides
from harness.run.session import resolve

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


def measure_time_to_target(ours: PlanOverrides, seeds: list[int], peer_runs: int, peer_epochs: int,
                           peer_env: dict[str, str], keep_in: str | None = None) -> dict:
    """Our runs of `ours` (one per seed) and `peer_runs` peer runs, alternated; `summarize`'s report.

    Our runs write under `keep_in`, one submission root per seed (default: a temporary folder,
    removed afterwards); the peer's runs are held to the target our plan resolves to.
    """
    target = float(resolve(ours)[1].target)
    # Without a data dir the ratings are the zip our first run downloads, so they are looked up then.
    ratings = functools.cache(lambda: peer_ratings(ours.data_dir, ours.cache_dir))
    if peer_runs and ours.data_dir:
        ratings()   # a data dir without them fails now rather than after our first run
    with scratch_dir("ncf-time-to-target-") as scratch:
        root = Path(keep_in) if keep_in else Path(scratch)
        runs = alternate(seeds, peer_runs,
                         lambda seed: run_ours(ours, seed, root / f"seed{seed}"),
                         lambda index: run_peer(index, peer_epochs, target, ratings(), peer_env))
    report = summarize(runs, target, ours.dataset)
    report["peer_environment"] = peer_env
    return report


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


def run_ours(ours: PlanOverrides, seed: int, root: Path) -> TimedRun:
    """One `run_benchmark.py run` in its own process; its time and epochs from its MLPerf log.

    The run writes into `root` like any run (a second invocation with the same root adds a
    result file beside the first); the newest log is this run's.
    """
    from harness.results.log_parser import parse_log
    from harness.results.run_record import run_record

    command = [sys.executable, str(RUN_BENCHMARK), "run", "--system", ours.system, "--dataset", ours.dataset,
               "--seed", str(seed), "--results-dir", str(root), "--quiet"]
    for flag, value in (("--data-dir", ours.data_dir), ("--cache-dir", ours.cache_dir)):
        if value:
            command += [flag, value]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    logs = sorted(root.glob("results/*/ncf/result_*.txt"), key=lambda path: path.stat().st_mtime)
    if proc.returncode != 0 or not logs:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-2:])
        raise UserError(f"our run with seed {seed} failed (exit {proc.returncode}): {tail}")
    record = run_record(parse_log(logs[-1]), ours.system)
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
