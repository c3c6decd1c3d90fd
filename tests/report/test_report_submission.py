"""`report` on a submission root of our own `:::MLLOG` logs (written here): today's ruleset with a
non-converged run, cost and share of peak FLOP/s from the system profile, host fingerprints,
provisional scores, baseline speedups and a truncated log."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import report
from support.events import mllog_events

PRICE, PEAK = 3.6, 2.0e12
MACS = 106_624           # docs/reference-facts.md §4: multiply-adds of one closed-division NeuMF forward pass


def write_log(path: Path, events) -> None:
    lines = [":::MLLOG " + json.dumps({
        "namespace": "", "time_ms": e.time_ms, "event_type": "POINT_IN_TIME", "key": e.key,
        "value": e.value, "metadata": {"file": "runner.py", "lineno": 1, **e.metadata}}) for e in events]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_run(root: Path, system: str, n: int, host: str, **kwargs) -> None:
    folder = root / "results" / system / "ncf"
    write_log(folder / f"result_{n}.txt", mllog_events(system=system, seed=n, **kwargs))
    (folder / f"result_{n}.json").write_text(json.dumps({"host_fingerprint": host}), encoding="utf-8")


def write_profile(root: Path, system: str, harness: dict) -> None:
    desc = {"system_name": system, "division": "closed", "number_of_nodes": "1",
            "host_processors_per_node": "1", "host_processor_model_name": "Test CPU",
            "host_processor_core_count": "2", "accelerators_per_node": "0",
            "accelerator_model_name": "N/A", "framework": "TensorFlow 2.21.0", "harness": harness}
    (root / "systems").mkdir(parents=True, exist_ok=True)
    (root / "systems" / f"{system}.json").write_text(json.dumps(desc), encoding="utf-8")


# cpu-a: 11 logs; run 3 never converges, run 10 is cut off before run_stop.
EPOCH_MS = [900, 1000, 1100, 1000, 950, 1200, 1050, 980, 1010, 1500]
HRS = [0.3, 0.5, 0.62, 0.64]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    for n, epoch_ms in enumerate(EPOCH_MS):
        failed = n == 3
        write_run(root, "cpu-a", n, "hostA", hrs=[0.3, 0.5] if failed else HRS, epoch_ms=epoch_ms,
                  start_ms=1e6 * (n + 1), status="aborted" if failed else "success",
                  abort_reason="max_epochs" if failed else None)
    write_run(root, "cpu-a", 10, "hostA", hrs=HRS, start_ms=5e5, stop=False)
    write_profile(root, "cpu-a", {"price_per_hour_usd": PRICE, "peak_flops": PEAK})
    for n in range(4):   # cpu-b: one name, two hosts, two runs each
        write_run(root, "cpu-b", n, f"host{n % 2}", hrs=HRS, epoch_ms=200, start_ms=1e6 * (n + 1))
    write_profile(root, "cpu-b", {"price_per_hour_usd": None, "peak_flops": None})
    return root


def passing(path):
    return SimpleNamespace(path=path, format="mllog", division="closed", passed=True, failures=[], warnings=[])


@pytest.fixture(scope="module")
def built(root):
    return report.build_report([root], baseline="cpu-a", checker=passing)


def run_seconds(epoch_ms: float, epochs: int) -> float:
    """run_start .. run_stop of `mllog_events`: epochs x (train + 500 ms eval) + 1 ms."""
    return (epochs * (epoch_ms + 500.0) + 1.0) / 1000.0


def test_current_rule_with_one_non_converged_run(built):
    a = next(s for s in built.systems if s.system == "cpu-a")
    assert a.ruleset == "mlperf-0.6" and a.source == report.OURS and a.host == "hostA"
    converged = sorted(run_seconds(ms, len(HRS)) for n, ms in enumerate(EPOCH_MS) if n != 3)
    assert a.score.seconds == pytest.approx(statistics.mean(converged[1:]))   # slowest kept, failure dropped
    assert not a.score.provisional and a.converged == 9 and len(a.eligible) == 10
    rows = {r.result: r for r in a.runs}
    assert rows["result_3"].scoring == "dropped (non-converged)"
    assert rows["result_3"].record.status_text == "aborted (max_epochs)"
    assert rows["result_10"].scoring.startswith("excluded: truncated")
    assert a.epochs.mean == 3 and a.hardware == "Test CPU (2 cores)"   # HR 0.62 >= target 0.6 at epoch 3


def test_cost_and_share_of_peak_from_the_profile(built):
    a = next(s for s in built.systems if s.system == "cpu-a")
    assert a.cost_usd == pytest.approx(PRICE * a.score.seconds / 3600.0)
    per_epoch = 2 * MACS * (3 * 5000 + 200_000)
    rates = [len(HRS) * per_epoch / run_seconds(EPOCH_MS[int(key.rsplit("_", 1)[1].split(".")[0])], len(HRS))
             for key in a.score.counted]
    assert a.peak_share == pytest.approx(statistics.mean(rates) / PEAK)
    frame = report.runs_table(built)
    first = frame[frame["result"] == "result_0"].iloc[0]
    assert first["train_examples_per_s"] == round(5000 / (EPOCH_MS[0] / 1000.0))


def test_hosts_are_scored_apart_and_warned_about(built):
    b = [s for s in built.systems if s.system == "cpu-b"]
    assert sorted(s.host for s in b) == ["host0", "host1"]
    assert sorted(s.label for s in b) == ["cpu-b [host0]", "cpu-b [host1]"]
    assert all(s.score.seconds is None and s.score.reason.startswith("2 of 10 runs") for s in b)
    assert any("cpu-b mixes 2 hosts" in w for w in built.warnings)
    assert all(s.cost_usd is None and s.peak_share is None for s in b)
    assert [s.system for s in built.systems][0] == "cpu-a"   # scored systems first


def test_baseline_speedup_and_three_runs_make_a_provisional_score(root, tmp_path):
    assert next(s for s in report.build_report([root], baseline="cpu-a", checker=passing).systems
                if s.system == "cpu-a").speedup == pytest.approx(1.0)
    small = tmp_path / "small"
    for n in range(3):
        write_run(small, "cpu-c", n, "hostC", hrs=HRS, epoch_ms=300 + 100 * n, start_ms=1e6 * (n + 1))
    built = report.build_report([root, small], baseline="cpu-a", checker=passing)
    a = next(s for s in built.systems if s.system == "cpu-a")
    c = next(s for s in built.systems if s.system == "cpu-c")
    assert c.score.provisional and c.score.reason == "3 of 10 runs"
    assert c.score.seconds == pytest.approx(run_seconds(400, len(HRS)))
    assert c.speedup == pytest.approx(a.score.seconds / c.score.seconds)
    assert any("cpu-c: provisional score (3 of 10 runs)" in w for w in built.warnings)


def test_without_a_checker_runs_are_marked_unchecked(root):
    built = report.build_report([root / "results" / "cpu-a"], checker=None)
    assert {r.compliance for r in built.runs} == {"unchecked"}
    assert any("scored unchecked" in w for w in built.warnings)


def test_real_checker_keeps_our_incomplete_logs_out_of_the_score(root):
    """These hand-written logs lack most required keys (init_start, hyperparameters...): the
    compliance package must fail them, and then nothing may be scored."""
    built = report.build_report([root / "results" / "cpu-a"])
    assert {r.compliance for r in built.runs} == {"failed"}
    assert all(r.scoring.startswith("excluded:") for r in built.runs)
    (a,) = built.systems
    assert a.score.seconds is None and not a.eligible
    assert any("11 of 11 logs left out of the score" in w for w in built.warnings)


def test_compliant_logs_are_scored_and_a_broken_one_is_not(tmp_path):
    """Logs the compliance tests' builder writes (known to pass the real checker): today's rule
    over the passing ones; a copy missing one eval_accuracy fails and stays out."""
    from support.logbuilder import LogBuilder

    folder = tmp_path / "results" / "test-system" / "ncf"
    folder.mkdir(parents=True)
    seconds = {}
    for n in range(11):
        log = LogBuilder(epochs=3 + n % 3, reach_target=n != 4, step_ms=100.0 + 7 * n)
        log.retime(1.7e12 + n * 1e7)
        if n == 7:
            log.drop("eval_accuracy", epoch=2)
        log.write(folder / f"result_{n}.txt")
        seconds[n] = (log.get("run_stop").time_ms - log.get("run_start").time_ms) / 1000.0
    built = report.build_report([tmp_path])
    rows = {int(r.result.split("_")[1]): r for r in built.runs}
    assert rows[7].compliance == "failed" and rows[7].scoring.startswith("excluded: non-compliant")
    assert all(rows[n].compliance == "passed" for n in rows if n != 7)
    (system,) = built.systems
    window = [n for n in range(11) if n != 7][:10]            # first 10 scoreable runs by run_start
    converged = sorted(seconds[n] for n in window if n != 4)  # run 4 never reached the target
    assert system.score.seconds == pytest.approx(statistics.mean(converged[1:]), abs=1e-6)
    assert rows[4].scoring == "dropped (non-converged)" and not system.score.provisional
