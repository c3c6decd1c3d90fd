"""`run_benchmark.py time-to-target`: how runs are alternated, timed and compared with the peer's.

Why: the command backs the time-to-target figures (docs/performance.md) against the TF Model Garden peer. The
peer's time must be counted exactly as stated (its per-epoch train + eval seconds up to the first
epoch at the target), ours must be the MLPerf log's run_start..run_stop, and runs that miss the
target must not enter the means. No test asserts a speed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.measure import time_to_target as ttt
from harness.cli import main
from harness.commands.time_to_target import format_report
from harness.results.log_parser import parse_log
from harness.measure.peer import PeerCurve
from harness.results.run_record import run_record


def _peer_log(path: Path, hr: list[float], seconds: list[float]) -> Path:
    result = {"hr_at_10_per_epoch": hr, "epoch_seconds": seconds, "train_seconds": seconds,
              "eval_seconds": [0.0] * len(seconds), "startup_seconds": 3.0, "foreign_cpu_cores_avg": 0.0, "seed": 0}
    path.write_text("some training output\nTFG_RESULT " + json.dumps(result) + "\n")
    return path


def test_peer_time_is_its_epochs_summed_up_to_the_first_at_the_target(tmp_path):
    log = _peer_log(tmp_path / "peer.log", [0.10, 0.28, 0.2901, 0.35], [10.0, 11.0, 12.5, 13.0])
    run = ttt.peer_run_from_log(log, 2, 0.29)
    assert (run.who, run.label, run.epochs_run, run.epochs_to_target) == ("peer", "run 2", 4, 3)
    assert run.seconds == pytest.approx(33.5) and run.best_hr == 0.35
    missed = ttt.peer_run_from_log(log, 1, 0.36)
    assert missed.seconds is None and missed.epochs_to_target is None and not missed.reached


def test_runs_alternate_starting_with_ours():
    ours = lambda seed: ttt.TimedRun("ours", f"seed {seed}", 1, 1, 1.0, 0.3, "")   # noqa: E731
    peer = lambda i: ttt.TimedRun("peer", f"run {i}", 1, 1, 2.0, 0.3, "")          # noqa: E731
    labels = [run.label for run in ttt.alternate([0, 1, 2, 3], 3, ours, peer)]
    assert labels == ["seed 0", "run 1", "seed 1", "run 2", "seed 2", "run 3", "seed 3"]
    labels = [run.label for run in ttt.alternate([5], 2, ours, peer)]
    assert labels == ["seed 5", "run 1", "run 2"]
    assert [run.label for run in ttt.alternate([7, 8], 0, ours, peer)] == ["seed 7", "seed 8"]


def test_means_leave_out_runs_that_missed_the_target():
    runs = [ttt.TimedRun("ours", "seed 0", 11, 11, 30.0, 0.30, ""),
            ttt.TimedRun("ours", "seed 1", 20, None, None, 0.28, ""),
            ttt.TimedRun("ours", "seed 2", 6, 6, 20.0, 0.31, ""),
            ttt.TimedRun("peer", "run 1", 12, 7, 100.0, 0.32, ""),
            ttt.TimedRun("peer", "run 2", 12, 9, 80.0, 0.31, "")]
    report = ttt.summarize(runs, 0.29, "ml-latest-small")
    assert report["ours"] == {"runs": 3, "reached": 2, "mean_s": 25.0, "olympic_mean_s": None, "fastest_s": 20.0,
                              "slowest_s": 30.0}
    assert report["peer"]["mean_s"] == 90.0
    assert report["ratios"] == {"mean_vs_mean": pytest.approx(25.0 / 90.0),
                                "our_slowest_vs_peer_fastest": pytest.approx(30.0 / 80.0)}
    assert ttt.summarize(runs[:3], 0.29, "ml-latest-small")["ratios"] == {}


def test_olympic_means_drop_each_sides_fastest_and_slowest_run():
    runs = [ttt.TimedRun("ours", f"seed {i}", 9, 9, t, 0.30, "") for i, t in enumerate([40.0, 20.0, 30.0, 26.0])]
    runs += [ttt.TimedRun("peer", f"run {i}", 12, 7, t, 0.31, "") for i, t in enumerate([60.0, 140.0, 100.0])]
    runs.append(ttt.TimedRun("peer", "run 9", 12, None, None, 0.28, ""))
    report = ttt.summarize(runs, 0.29, "ml-latest-small")
    assert report["ours"]["olympic_mean_s"] == pytest.approx(28.0)     # 20 and 40 dropped
    assert report["peer"]["olympic_mean_s"] == pytest.approx(100.0)    # the run that missed is not a time
    assert report["ratios"]["olympic_vs_olympic"] == pytest.approx(0.28)
    assert "olympic mean against olympic mean 0.28x" in format_report(report)


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "synthetic-small"], "the peer trains only ml-latest-small"),
    (["--peer-runs", "-1"], "argument --peer-runs: must be at least 0"),
    (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
    (["--seeds", ","], "--seeds needs at least one seed"),
    (["--peer-env", "=1"], "--peer-env takes KEY=VALUE"),
    (["--peer-runs", "0", "--peer-env", "A=1"], "--peer-env needs peer runs"),
])
def test_bad_input_is_one_sentence_and_a_non_zero_exit(capsys, flags, message):
    assert main(["time-to-target", "--system", "cpu", *flags]) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_peer_run_i_has_seed_i_minus_1_and_is_timed_from_its_curve(tmp_path, monkeypatch):
    ratings = tmp_path / "ratings.csv"
    calls = []

    def run_peer_mlsmall(path, epochs, seed=0, env=None, wait_quiet_s=0):
        calls.append((path, epochs, seed, env))
        return PeerCurve(hr_per_epoch=(0.2, 0.3), epoch_seconds=(4.0, 5.0), train_seconds=(3.0, 4.0),
                         eval_seconds=(1.0, 1.0), startup_s=2.0, foreign_cores=0.0, seed=seed, log=tmp_path / "p.log")

    monkeypatch.setattr(ttt, "run_peer_mlsmall", run_peer_mlsmall)
    run = ttt.run_peer(3, 12, 0.29, ratings, {"EXTRA": "yes"})
    assert calls == [(ratings, 12, 2, {"EXTRA": "yes"})]
    assert (run.label, run.epochs_to_target, run.seconds, run.log) == ("run 3", 2, 9.0, str(tmp_path / "p.log"))


def test_a_data_dir_without_the_peers_ratings_fails_before_any_run(tmp_path, capsys):
    assert main(["time-to-target", "--system", "cpu", "--data-dir", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "holds neither ml-latest-small.zip nor an extracted" in err and err.count("\n") == 1


@pytest.mark.slow
def test_our_time_is_the_logs_run_window(tmp_path, capsys):
    """Ours alone (no peer) on the offline synthetic set: the time reported is run_stop - run_start."""
    assert main(["time-to-target", "--system", "cpu", "--dataset", "synthetic-small", "--seeds", "0",
                 "--peer-runs", "0", "--results-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (run,) = report["runs"]
    record = run_record(parse_log(run["log"]), "cpu")
    assert record.converged and run["seconds"] == pytest.approx(record.time_to_train_s)
    assert run["epochs_to_target"] == record.epochs_to_target and report["target"] == record.target
    assert Path(run["log"]).is_relative_to(tmp_path / "seed0")
    assert report["ours"]["reached"] == 1 and report["ratios"] == {}
