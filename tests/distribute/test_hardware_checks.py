"""The pre-init hardware gate and provenance, on this CPU-only machine.

The TPU and GPU checks must fail with one clear UserError, quickly (the issue's bound is 30 s),
and the multi-host check must validate the cluster it is given.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.core.timeouts import TIMEOUT, call_with_timeout
from harness.distribute import hardware
from harness.distribute.hardware import check_cluster, check_declared_hardware, resolve_tpu_name
from harness.distribute.provenance import collect_provenance, git_commit, host_fingerprint
from harness.run.profiles import load_profile


@pytest.fixture
def no_tpu_env(monkeypatch):
    for name in hardware.TPU_ENV_VARIABLES + ("TF_CONFIG",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hardware, "_tpu_device_nodes", lambda: [])


def test_cpu_profile_needs_nothing(no_tpu_env):
    found = check_declared_hardware(load_profile("cpu"))
    assert found["device"] == "cpu" and found["cluster"]["is_chief"]


def test_tpu_without_any_tpu_fails_at_once(no_tpu_env):
    with pytest.raises(UserError) as err:
        check_declared_hardware(load_profile("tpu-v3-8"))
    message = str(err.value)
    assert message.startswith("System tpu-v3-8 expects 8 TPU cores (TPUClusterResolver")
    assert "found none" in message and "TPU_NAME" in message


def test_tpu_probe_is_killed_at_the_deadline(no_tpu_env):
    # The child process needs longer than 1 s just to import TensorFlow: the gate must give up
    # at the deadline instead of waiting for it.
    with pytest.raises(UserError, match=r"expects 4 TPU cores \(TPUClusterResolver tpu='my-tpu'\), "
                                        r"found none: no answer within 1 s"):
        check_declared_hardware(load_profile("tpu-v4-8"), tpu_name="my-tpu", timeout_s=1)


def test_tpu_resolver_error_is_reported(no_tpu_env):
    # A real TPUClusterResolver in the child: on this machine the TPU name cannot be resolved
    # (no metadata server), and the resolver's own error is the reason. The generous deadline
    # only covers the child's TensorFlow import on a busy machine; the bound is tested above.
    with pytest.raises(UserError) as err:
        check_declared_hardware(load_profile("tpu-v3-8"), tpu_name="no-such-tpu", timeout_s=60)
    message = str(err.value)
    assert message.startswith("System tpu-v3-8 expects 8 TPU cores (TPUClusterResolver tpu='no-such-tpu'), found none: ")
    assert "no answer within" not in message


def test_tpu_name_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "_tpu_device_nodes", lambda: [])
    profile = load_profile("tpu-v3-8")
    assert resolve_tpu_name(profile, "flag-tpu", environ={}) == ("flag-tpu", "--tpu")
    assert resolve_tpu_name(profile, None, environ={"TPU_NAME": "env-tpu"}) == (
        None, "environment variable TPU_NAME")
    assert resolve_tpu_name(profile, None, environ={}) == (None, "")
    monkeypatch.setattr(hardware, "_tpu_device_nodes", lambda: ["/dev/accel0"])
    assert resolve_tpu_name(profile, None, environ={})[0] == "local"
    data = json.loads(profile.path.read_text())
    data["harness"]["tpu"]["name"] = "declared-tpu"
    (tmp_path / "mytpu.json").write_text(json.dumps(data))
    assert resolve_tpu_name(load_profile("mytpu", tmp_path), None, environ={})[0] == "declared-tpu"


def test_gpu_profile_without_gpu_fails_at_once(no_tpu_env, monkeypatch):
    monkeypatch.setattr(hardware, "_gpu_device_nodes", lambda: [])
    with pytest.raises(UserError, match=r"^System gpu-h100-x8 expects 8 GPUs per host .*found none: "
                                        r"this machine has no GPU device files"):
        check_declared_hardware(load_profile("gpu-h100-x8"))


def test_gpu_check_asks_tensorflow(no_tpu_env, monkeypatch):
    # Pretend a driver is present: TensorFlow itself must then report that it sees no GPU.
    monkeypatch.setattr(hardware, "_gpu_device_nodes", lambda: ["/dev/nvidia0"])
    with pytest.raises(UserError, match=r"^System gpu-a100-x1 expects 1 GPU per host .*found none: "):
        check_declared_hardware(load_profile("gpu-a100-x1"), timeout_s=25)


def test_bounded_call_returns_the_result_or_the_error():
    assert call_with_timeout(lambda: 42, timeout_s=5) == (True, 42)
    ok, error = call_with_timeout(lambda: 1 / 0, timeout_s=5)
    assert not ok and isinstance(error, ZeroDivisionError)


def test_bounded_call_gives_up_on_a_hung_call():
    release = threading.Event()
    started = time.monotonic()
    try:
        assert call_with_timeout(release.wait, timeout_s=0.2) == (False, TIMEOUT)
        assert time.monotonic() - started < 5
    finally:
        release.set()  # let the abandoned daemon thread finish


def test_detect_accelerators_reports_tensorflow_view():
    found = hardware.detect_accelerators(timeout_s=25)
    assert found["error"] is None
    assert isinstance(found["built_with_cuda"], bool)
    assert found["gpus"] == []  # this machine has no accelerator (and CUDA_VISIBLE_DEVICES="")


def test_multi_host_needs_a_cluster(no_tpu_env, monkeypatch):
    profile = load_profile("cpu-2host")
    with pytest.raises(UserError, match="runs on 2 hosts and needs the cluster"):
        check_declared_hardware(profile)
    found = check_cluster(profile, "10.0.0.1:2222,10.0.0.2:2222", 1)
    assert found["workers"] == ["10.0.0.1:2222", "10.0.0.2:2222"] and not found["is_chief"]
    with pytest.raises(UserError, match="expects 2 hosts, but --worker-hosts lists 3"):
        check_cluster(profile, ["a:1", "b:1", "c:1"], 0)
    with pytest.raises(UserError, match="not HOST:PORT: 'b'"):
        check_cluster(profile, ["a:1", "b"], 0)
    with pytest.raises(UserError, match="--task-index needs --worker-hosts"):
        check_cluster(profile, None, 0)
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}))
    assert check_declared_hardware(profile)["cluster"]["is_chief"]
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}))
    with pytest.raises(UserError, match="index 2 is not one of the 2 worker entries"):
        check_declared_hardware(profile)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG"):
        check_declared_hardware(profile)


def test_host_info_and_fingerprint_need_no_tensorflow():
    code = ("import sys; from harness.distribute.provenance import host_fingerprint, collect_provenance; "
            "fp = host_fingerprint(); p = collect_provenance(tensorflow=False); "
            "assert 'tensorflow' not in sys.modules; print(fp, p['tensorflow_version'])")
    out = subprocess.run(["python", "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert out[0] == host_fingerprint() and len(out[0]) == 12


def test_provenance_has_the_keys():
    prov = collect_provenance()
    for key in ("harness_version", "git_commit", "tensorflow_version", "tensorflow_build",
                "numpy_version", "numba_version", "python", "host_fingerprint", "host", "threads", "accelerators",
                "mlperf_logging_version"):
        assert key in prov, key
    for key in ("cpu_model", "physical_cores", "logical_cpus", "memory_bytes", "cpu_isa", "os"):
        assert key in prov["host"], key
    assert isinstance(prov["host"]["cpu_isa"], list)
    import tensorflow as tf

    assert prov["tensorflow_version"] == tf.__version__
    assert {"built_with_cuda", "built_with_xla"} <= set(prov["tensorflow_build"])
    assert set(prov["threads"]["tensorflow"]) == {"intra_op", "inter_op"}
    assert prov["host"]["logical_cpus"] >= 1 and prov["host"]["memory_bytes"] > 0
    assert prov["host_fingerprint"] == host_fingerprint()
    import socket

    assert socket.gethostname() not in json.dumps(prov)
    json.dumps(prov)  # serialisable as it is written into every summary


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com",
                    *args], check=True, capture_output=True)


def test_git_commit_clean_dirty_and_outside_git(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    _git(tmp_path, "init", "-q")
    assert git_commit(tmp_path) == "unknown"  # no commit yet
    (tmp_path / "a.txt").write_text("a")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "results.txt").write_text("untracked output does not count")
    assert git_commit(tmp_path) == head
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "new.py").write_text("x = 1")
    assert git_commit(tmp_path) == head + "+dirty"
    (tmp_path / "harness" / "new.py").unlink()
    (tmp_path / "a.txt").write_text("changed")
    assert git_commit(tmp_path) == head + "+dirty"
