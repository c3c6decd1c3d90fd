"""The TPU path as far as a machine without a TPU allows, and dry runs of accelerator profiles (issue 4).

* the TPU profiles load with strategy tpu, their replica counts and per-replica batches;
* the TPU name from --tpu, and the TPU_NAME environment variable, reach TPUClusterResolver;
* when no TPU answers, the run stops with one clear error in bounded time, both at the pre-init
  hardware gate (the command line) and in `build_strategy` itself;
* `--dry-run` of tpu-v3-8 and gpu-h100-x8 prints the plan and exits 0 without importing
  TensorFlow, so without touching any hardware.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.distribute.hardware import resolve_tpu_name
from harness.run.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]
# The hardware gate gives a silent TPU 20 s (harness.distribute.hardware.DEFAULT_TIMEOUT_S); the issue asks
# for the error well within 30 s. The subprocess deadline is the hard stop against a hang.
NO_TPU_ERROR_WITHIN_S = 30


def closed_port() -> int:
    """A local port nothing listens on: a TPU address that never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(args: list[str], tmp_path: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    for name in ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG"):
        if name not in (env or {}):
            full_env.pop(name, None)
    return subprocess.run([sys.executable, str(REPO / "run_benchmark.py"), *args, "--results-dir", str(tmp_path)],
                          cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=timeout)


def only_error_line(done: subprocess.CompletedProcess) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return errors[0]


# --------------------------------------------------------------------------------------------
# Profiles


@pytest.mark.parametrize("name, replicas, per_replica", [("tpu-v3-8", 8, 4096), ("tpu-v4-8", 4, 8192)])
def test_tpu_profiles_declare_a_tpu_strategy(name, replicas, per_replica):
    profile = load_profile(name)
    h = profile.harness
    assert (h.device, h.strategy, h.num_hosts) == ("tpu", "tpu", 1)
    assert profile.num_replicas == replicas
    assert h.per_replica_batch_size == per_replica
    assert h.global_batch_size == replicas * per_replica
    assert h.tpu is not None and h.tpu.name is None   # the name comes from --tpu or the environment


# --------------------------------------------------------------------------------------------
# Resolver arguments


def test_tpu_name_precedence_flag_profile_environment():
    profile = load_profile("tpu-v3-8")
    assert resolve_tpu_name(profile, "my-tpu", environ={"TPU_NAME": "other"}) == ("my-tpu", "--tpu")
    assert resolve_tpu_name(profile, None, environ={"TPU_NAME": "other"}) == (None, "environment variable TPU_NAME")


def test_the_tpu_flag_reaches_tpu_cluster_resolver(monkeypatch):
    import tensorflow as tf

    from harness.distribute.strategy import build_strategy

    seen = []

    class Recorder:
        def __init__(self, **kwargs):
            seen.append(kwargs)
            raise ValueError("no such TPU")

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", Recorder)
    with pytest.raises(UserError, match=r"TPUClusterResolver\(tpu='my-tpu'\) found no TPU: no such TPU"):
        build_strategy("tpu", "tpu", 8, 1, tpu_name="my-tpu")
    with pytest.raises(UserError, match="TPU_NAME"):
        build_strategy("tpu", "tpu", 8, 1, tpu_name=None)
    assert seen == [{"tpu": "my-tpu"}, {"tpu": None}]


def test_tpu_name_from_the_environment_is_what_the_real_resolver_uses(monkeypatch):
    """With no flag the harness passes tpu=None and TensorFlow's resolver reads TPU_NAME itself."""
    import tensorflow as tf

    address = f"grpc://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("TPU_NAME", address)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=None)
    assert resolver.master() == address
    assert resolver.cluster_spec().as_dict() == {"worker": [address.removeprefix("grpc://")]}


# --------------------------------------------------------------------------------------------
# No TPU answering: one clear error, bounded time


@pytest.mark.parametrize("how", ["silent address", "environment name", "nothing configured"])
def test_no_tpu_gives_one_clear_error_in_bounded_time(how, tmp_path):
    args = ["--system", "tpu-v3-8", "--dataset", "synthetic-small", "--seed", "0", "--quiet"]
    env = {}
    if how == "silent address":
        args += ["--tpu", f"grpc://127.0.0.1:{closed_port()}"]
    elif how == "environment name":
        env["TPU_NAME"] = "my-tpu"
    start = time.monotonic()
    try:
        done = cli(args, tmp_path, timeout=NO_TPU_ERROR_WITHIN_S, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no answer within {NO_TPU_ERROR_WITHIN_S} s when no TPU answers ({how})")
    elapsed = time.monotonic() - start
    assert done.returncode == 2, done.stderr[-3000:]
    error = only_error_line(done)
    assert "System tpu-v3-8 expects 8 TPU cores" in error and "found none" in error, error
    if how == "environment name":
        assert "TPU_NAME" in error
    print(f"\n{how}: error after {elapsed:.1f} s: {error}")
    assert not (tmp_path / "results").exists(), "nothing may be written when the hardware is missing"


@pytest.mark.slow
def test_build_strategy_gives_up_on_a_silent_tpu(tmp_path):
    """Past the gate, connecting and initialising are bounded too (TPU_INIT_TIMEOUT_S, shortened here)."""
    code = (
        "import sys\n"
        "import harness.distribute.strategy as s\n"
        "from harness.core.errors import UserError\n"
        "s.TPU_INIT_TIMEOUT_S = 3\n"
        "try:\n"
        f"    s.build_strategy('tpu', 'tpu', 8, 1, tpu_name='grpc://127.0.0.1:{closed_port()}')\n"
        "except UserError as exc:\n"
        "    print('error:', exc)\n"
        "    sys.exit(2)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("build_strategy (or the process exit after it) hung on a silent TPU")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "did not initialise: no answer within 3 s" in done.stdout, done.stdout


# --------------------------------------------------------------------------------------------
# Dry runs


@pytest.mark.parametrize("name, replicas, global_batch, per_replica", [
    ("tpu-v3-8", 8, "32768", "4096 per replica"),
    ("gpu-h100-x8", 8, "1048576", "131072 per replica"),
])
def test_dry_run_prints_the_plan_without_touching_hardware(name, replicas, global_batch, per_replica, tmp_path):
    code = (
        "import sys\n"
        "from harness.cli import main\n"
        f"rc = main(['--system', '{name}', '--dry-run', '--seed', '0', '--results-dir', {str(tmp_path)!r}])\n"
        "print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    out = " ".join(done.stdout.split())
    assert f"{replicas} replica(s)" in out
    assert f"global batch {global_batch} ({per_replica})" in out
    assert "tensorflow imported: False" in out
    assert not (tmp_path / "results").exists()
