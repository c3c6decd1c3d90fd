"""Numeric flags and dataset names are refused before any work, in one sentence naming the range (issue 25).

Why: a value out of range used to train anyway (`--batch-size 0` ran at the default batch,
`--seed -1` was logged as a result) or to fail after TensorFlow's start-up with a traceback and
`.incomplete` files. Every case here must end with exit 2, one `error:` line that says what is
allowed, nothing written under the results root or the data cache, and (through the real entry
point) no TensorFlow import.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.core.errors import UserError
from harness.run.plan import SEED_LIMIT, PlanOverrides, RUNS, check_seed, seed_range
from harness.run.session import resolve

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--system", "cpu", "--dataset", "synthetic-small"]
KNOWN = "known datasets: ml-20m, ml-1m, ml-100k, ml-25m, ml-latest-small, synthetic-small, synthetic-ml20m, " \
        "synthetic-ml20mx<k>x<m>."


def _assert_nothing_written(root: Path) -> None:
    written = [str(p.relative_to(root)) for p in root.rglob("*")]
    assert written == [], written


def refused_by_entry_point(tmp_path: Path, *argv: str) -> str:
    """`python run_benchmark.py argv` in a fresh process: the error line, checked to be the only output."""
    results, cache = tmp_path / "results-root", tmp_path / "cache"
    results.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "run_benchmark.py"), *argv,
                           *(["--results-dir", str(results)] if argv[0] not in ("throughput", "data") else [])],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, NCF_CACHE_DIR=str(cache)))
    imports = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    err = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert not [line for line in imports if line.rstrip().endswith(" tensorflow")], "tensorflow was imported"
    assert done.stdout == "" and len(err) == 1 and err[0].startswith("error: "), err
    _assert_nothing_written(results)
    assert not cache.exists()
    return err[0]


def refused_by_main(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                    *argv: str) -> str:
    """`harness.cli.main(argv)` in this process: the error line, checked to be the only output."""
    results, cache = tmp_path / "results-root", tmp_path / "cache"
    results.mkdir(parents=True)
    monkeypatch.setenv("NCF_CACHE_DIR", str(cache))
    own_results_dir = argv[0] not in ("throughput", "data")
    assert cli.main([*argv, *(["--results-dir", str(results)] if own_results_dir else [])]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    _assert_nothing_written(results)
    assert not cache.exists()
    return lines[0]


def test_batch_size_zero_is_refused_not_read_as_the_default(tmp_path):
    assert refused_by_entry_point(tmp_path, *QUICK, "--batch-size", "0") == \
        "error: argument --batch-size: must be at least 1, got 0 (see --help)"


@pytest.mark.parametrize("field, flag, allowed", [
    ("batch_size", "--batch-size", "at least 1"), ("max_epochs", "--max-epochs", "at least 1"),
    ("eval_users", "--eval-users", "at least 1"), ("steps_per_call", "--steps-per-call", "at least 1"),
    ("mf_dim", "--mf-dim", "at least 1"), ("runs", "--runs", "in 1..2147483647"),
    ("learning_rate", "--learning-rate", "> 0 and finite"), ("epsilon", "--epsilon", "> 0 and finite"),
])
def test_zero_in_overrides_a_command_builds_is_refused_not_read_as_the_default(field, flag, allowed):
    with pytest.raises(UserError) as caught:
        resolve(PlanOverrides(system="cpu", dataset="synthetic-small", **{field: 0}))
    assert str(caught.value) == f"{flag} must be {allowed}, got 0."


def test_a_negative_seed_is_refused_before_the_run_starts(tmp_path):
    assert refused_by_entry_point(tmp_path, *QUICK, "--seed", "-1", "--runs", "2") == \
        "error: --seed must be in 0..2147483646 (seed + runs - 1 < 2^31 with --runs 2), got -1."


def test_a_seed_past_64_bits_is_refused_before_tensorflow_starts(tmp_path):
    assert refused_by_entry_point(tmp_path, *QUICK, "--seed", "18446744073709551616") == \
        "error: --seed must be in 0..2147483647 (seed + runs - 1 < 2^31 with --runs 1), got 18446744073709551616."


def test_the_last_runs_seed_must_stay_below_2_to_the_31(tmp_path, capsys, monkeypatch):
    assert refused_by_main(tmp_path, capsys, monkeypatch, *QUICK, "--seed", str(SEED_LIMIT - 2), "--runs", "3") == \
        "error: --seed must be in 0..2147483645 (seed + runs - 1 < 2^31 with --runs 3), got 2147483646."
    _, plan = resolve(PlanOverrides(system="cpu", dataset="synthetic-small", seed=SEED_LIMIT - 3, runs=3))
    assert plan.seeds == [SEED_LIMIT - 3, SEED_LIMIT - 2, SEED_LIMIT - 1]   # the top of the range is accepted


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-0.001"])
def test_a_learning_rate_that_is_not_a_finite_positive_number_is_refused(value, tmp_path, capsys, monkeypatch):
    assert refused_by_main(tmp_path, capsys, monkeypatch, *QUICK, "--learning-rate", value) == \
        f"error: argument --learning-rate: must be > 0 and finite, got {value} (see --help)"


@pytest.mark.parametrize("flag, value, allowed", [
    ("--beta1", "nan", "in [0, 1)"), ("--beta2", "1", "in [0, 1)"), ("--epsilon", "inf", "> 0 and finite"),
    ("--target", "nan", "in (0, 1]"), ("--target", "0", "in (0, 1]"), ("--max-epochs", "0", "at least 1"),
    ("--eval-users", "0", "at least 1"), ("--steps-per-call", "0", "at least 1"), ("--mf-dim", "0", "at least 1"),
    ("--task-index", "-1", "at least 0"), ("--runs", "0", "in 1..2147483647"),
])
def test_every_other_numeric_run_flag_names_its_range(flag, value, allowed, tmp_path, capsys, monkeypatch):
    assert refused_by_main(tmp_path, capsys, monkeypatch, *QUICK, flag, value) == \
        f"error: argument {flag}: must be {allowed}, got {value} (see --help)"


def test_an_unknown_dataset_lists_the_known_names(tmp_path, capsys, monkeypatch):
    assert refused_by_main(tmp_path, capsys, monkeypatch, "--system", "cpu", "--dataset", "ml-999m") == \
        f"error: Unknown dataset 'ml-999m'; {KNOWN}"
    assert refused_by_main(tmp_path / "data", capsys, monkeypatch, "data", "--dataset", "ml-999m") == \
        f"error: Unknown dataset 'ml-999m'; {KNOWN}"   # the same words as the data command's
    assert "synthetic-ml20mx<users factor>x<items factor>" in refused_by_main(
        tmp_path / "synthetic", capsys, monkeypatch, "--system", "cpu", "--dataset", "synthetic-ml20mx0x")


def test_time_to_target_seeds_share_the_seed_range(tmp_path, capsys, monkeypatch):
    assert refused_by_main(tmp_path, capsys, monkeypatch, "time-to-target", "--system", "cpu",
                           "--seeds", f"0,{SEED_LIMIT}") == \
        "error: argument --seeds: each seed must be in 0..2147483647, got 2147483648 (see --help)"
    assert refused_by_main(tmp_path / "epochs", capsys, monkeypatch, "time-to-target", "--system", "cpu",
                           "--peer-epochs", "0") == \
        "error: argument --peer-epochs: must be at least 1, got 0 (see --help)"


def test_calibrate_seeds_count_with_seed_and_stay_in_range(tmp_path, capsys, monkeypatch):
    assert refused_by_entry_point(tmp_path, "calibrate", *QUICK, "--seed", str(SEED_LIMIT - 4)) == \
        "error: --seed must be in 0..2147483643 (seed + runs - 1 < 2^31 with --seeds 5), got 2147483644."
    assert refused_by_main(tmp_path / "count", capsys, monkeypatch, "calibrate", *QUICK, "--seeds", "1") == \
        "error: argument --seeds: must be in 2..2147483647, got 1 (see --help)"


def test_throughput_steps_zero_is_refused(tmp_path):
    assert refused_by_entry_point(tmp_path, "throughput", *QUICK, "--steps", "0") == \
        "error: argument --steps: must be at least 2, got 0 (see --help)"


@pytest.mark.parametrize("value", ["-1", str(SEED_LIMIT), "1.5"])
def test_data_seed_is_one_seed_in_range(value, tmp_path, capsys, monkeypatch):
    message = refused_by_main(tmp_path, capsys, monkeypatch, "data", "--dataset", "synthetic-small", "--seed", value)
    expected = "expected an integer, got '1.5'" if value == "1.5" else f"must be in 0..2147483647, got {value}"
    assert message == f"error: argument --seed: {expected} (see --help)"


def test_the_seed_range_is_the_one_drawn_seeds_come_from():
    assert seed_range(1).describe() == "in 0..2147483647" and RUNS.high == SEED_LIMIT - 1
    check_seed(SEED_LIMIT - 5, 5)
    _, plan = resolve(PlanOverrides(system="cpu", dataset="synthetic-small", runs=4))
    assert plan.seeds_drawn and all(0 <= s and s + 3 < SEED_LIMIT for s in plan.seeds)
