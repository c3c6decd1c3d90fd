"""The product's main job, end to end through the CLI: the README's offline run, its log, its
result files, user errors, and an interrupted run (issue 3)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.events import read_events

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--system", "cpu", "--dataset", "synthetic-small", "--seed", "0"]

# Keys every run log must carry, in this order of first appearance (docs/reference-facts.md §7 + provenance).
ORDERED_KEYS = [
    "submission_benchmark", "submission_org", "submission_division", "submission_status",
    "submission_platform", "cache_clear", "init_start", "seed", "global_batch_size", "opt_name",
    "opt_base_learning_rate", "opt_adam_beta_1", "opt_adam_beta_2", "opt_adam_epsilon",
    "preproc_hp_min_ratings", "preproc_hp_num_eval", "preproc_hp_sample_eval_replacement",
    "input_hp_num_neg", "input_hp_sample_train_replacement", "eval_hp_num_users", "eval_hp_num_neg",
    "model_hp_mf_dim", "model_hp_mlp_layer_sizes", "model_hp_loss_fn", "eval_target",
    "train_samples", "eval_samples", "dataset_sha256", "harness_version", "framework_version",
    "init_stop", "run_start", "eval_set_sha256", "block_start", "epoch_start", "epoch_stop",
    "eval_start", "eval_accuracy", "eval_stop", "block_stop", "run_stop",
]


def _command(args: list[str]) -> list[str]:
    return [sys.executable, str(REPO / "run_benchmark.py"), *args]


def _env(root: Path) -> dict[str, str]:
    """The environment of a CLI run in `root`: its own dataset cache, TensorFlow's logs quiet."""
    return dict(os.environ, NCF_CACHE_DIR=str(root / "cache"), TF_CPP_MIN_LOG_LEVEL="2")


def cli(args: list[str], tmp_path: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(_command(args), cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout, **kw)


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so Python installs KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The README's offline quick start, once, into a temporary submission root."""
    root = tmp_path_factory.mktemp("root")
    done = cli([*QUICK, "--results-dir", str(root)], root)
    return done, root


@pytest.mark.slow
def test_quick_start_reaches_the_synthetic_target(quick_run):
    done, root = quick_run
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((root / "results/cpu/ncf/result_0.json").read_text())
    assert summary["status"] == "success", summary
    assert summary["best_hit_rate"] >= summary["target"]
    assert summary["complete"] is True
    assert summary["target_status"] == "calibrated" and summary["target_note"] == ""
    assert summary["dataset"]["preparation_version"] == "loo-v2-min20-tiebreak-splitmix64"
    assert len(summary["dataset"]["heldout_sha256"]) == 64
    assert (root / "systems/cpu.json").is_file()


@pytest.mark.slow
def test_quick_start_log_parses_and_has_every_key_in_order(quick_run):
    done, root = quick_run
    log = root / "results/cpu/ncf/result_0.txt"
    from mlperf_logging.compliance_checker import mlp_parser

    parsed, errors = mlp_parser.parse_file(str(log), ruleset="0.7.0")
    assert not errors
    keys = [e.key for e in parsed]
    positions = [keys.index(k) for k in ORDERED_KEYS]
    assert positions == sorted(positions), [k for k, p in zip(ORDERED_KEYS, positions)]
    epochs = [e.value["metadata"]["epoch_num"] for e in parsed if e.key == "eval_accuracy"]
    assert epochs == list(range(1, len(epochs) + 1))
    stop = [e for e in parsed if e.key == "run_stop"][0]
    assert stop.value["metadata"]["status"] == "success"


@pytest.mark.slow
def test_quick_start_checks_its_own_log(quick_run):
    done, _ = quick_run
    assert "compliance (open): PASS" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--system", "no-such-system", "--dataset", "synthetic-small"], "no-such-system"),
    (["--system", "cpu", "--dataset", "synthetic-small", "--batch-size", "-5"], "--batch-size"),
    (["--system", "cpu", "--dataset", "synthetic-small", "--beta1", "1.5"], "--beta1"),
    (["--system", "cpu", "--dataset", "no-such-set"], "no-such-set"),
    (["--system", "cpu", "--max-epochs", "zero"], "--max-epochs"),
    (["--system", "tpu-v3-8", "--dataset", "synthetic-small"], "TPU"),
])
def test_user_errors_are_one_sentence_and_write_nothing(args, message, tmp_path):
    started = time.time()
    done = cli([*args, "--results-dir", str(tmp_path / "root")], tmp_path, timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "root").glob("results/**/result_*.txt"))
    assert time.time() - started < 60


def test_dry_run_prints_the_plan_without_training(tmp_path):
    done = cli([*QUICK, "--dry-run", "--results-dir", str(tmp_path)], tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "division" in done.stdout and "open" in done.stdout
    assert not (tmp_path / "results").exists()


def test_dry_run_says_a_target_is_not_calibrated_on_real_data(tmp_path):
    done = cli(["--system", "cpu", "--dataset", "ml-100k", "--dry-run", "--results-dir", str(tmp_path)],
               tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "HR@10 >= 0.2 (provisional: set from calibrate figures measured on real ml-100k elsewhere" in text
    assert "not calibrated on this machine" in text


def _interrupted_run(root: Path, stem: str, signum: int) -> subprocess.Popen:
    """Start a long run into `root` (log `stem`.txt), send `signum` once its first eval is logged,
    wait for it to end."""
    # preexec_fn: Ctrl-C's default action, whatever this test inherited. A test run launched as a
    # background job (`pytest ... &` in a script) ignores SIGINT, and its children would inherit that.
    proc = subprocess.Popen(_command([*QUICK, "--results-dir", str(root), "--max-epochs", "50", "--target", "0.999"]),
                            cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        log = root / "results/cpu/ncf" / f"{stem}.txt"
        deadline = time.time() + 240
        while (time.time() < deadline and proc.poll() is None
               and (not log.exists() or "eval_accuracy" not in log.read_text())):
            time.sleep(0.5)
        proc.send_signal(signum)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:     # never leave a 50-epoch run behind to load the rest of the suite
            proc.kill()
            proc.wait()
    return proc


def _assert_aborted_as_interrupted(results: Path, stem: str) -> None:
    assert not (results / f"{stem}.txt").exists(), "an interrupted run must leave the counted result names"
    stop = [e for e in read_events(results / f"{stem}.txt.incomplete") if e["key"] == "run_stop"]
    assert len(stop) == 1 and stop[0]["metadata"]["status"] == "aborted"
    assert stop[0]["metadata"]["abort_reason"] == "interrupted"
    summary = json.loads((results / f"{stem}.json.incomplete").read_text())
    assert summary["complete"] is False and summary["abort_reason"] == "interrupted"


@pytest.mark.slow
def test_interrupted_run_is_aborted_and_the_next_run_takes_the_next_number(quick_run, tmp_path):
    _, root = quick_run
    before = (root / "results/cpu/ncf/result_0.txt").read_text()
    proc = _interrupted_run(root, "result_1", signal.SIGINT)
    assert proc.returncode == 130       # cli.main's exit code for an interrupted command
    _assert_aborted_as_interrupted(root / "results/cpu/ncf", "result_1")
    assert (root / "results/cpu/ncf/result_0.txt").read_text() == before
    nxt = cli([*QUICK, "--results-dir", str(root), "--max-epochs", "1", "--target", "0.999"], root)
    assert nxt.returncode == 0, nxt.stderr[-2000:]
    assert (root / "results/cpu/ncf/result_2.txt").is_file()


@pytest.mark.slow
def test_sigterm_aborts_a_run_like_ctrl_c(tmp_path):
    proc = _interrupted_run(tmp_path, "result_0", signal.SIGTERM)
    assert proc.returncode == 130
    _assert_aborted_as_interrupted(tmp_path / "results/cpu/ncf", "result_0")
