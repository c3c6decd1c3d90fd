"""The global batch must split evenly over the replicas: a clear error where it does not (issue 4).

Two places catch it before any TensorFlow work: a profile whose own global_batch_size does not
divide (profile validation), and a --batch-size that does not divide the profile's replicas
(plan resolution). Both are user errors: one sentence, exit 2, no traceback.
"""
from __future__ import annotations

import json
import shutil

import pytest

from harness.cli import main
from harness.core.errors import UserError
from harness.run.profiles import DEFAULT_SYSTEMS_DIR, load_profile


@pytest.mark.parametrize("system, batch, replicas", [
    ("tpu-v3-8", 1001, 8),
    ("tpu-v4-8", 32770, 4),
    ("gpu-h100-x8", 1048577, 8),
    ("cpu-2host", 4097, 2),
    ("cpu-mirrored-x2", 4095, 2),
])
def test_batch_flag_that_does_not_divide_is_a_user_error(system, batch, replicas, tmp_path, capsys):
    rc = main(["--system", system, "--dataset", "synthetic-small", "--batch-size", str(batch), "--seed", "0",
               "--dry-run", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() == f"error: The global batch {batch} does not divide evenly over {replicas} replicas."


@pytest.mark.parametrize("system, batch, per_replica", [("tpu-v3-8", 1024, 128), ("cpu-2host", 4096, 2048),
                                                         ("cpu-mirrored-x2", 4096, 2048)])
def test_batch_flag_that_divides_is_split_per_replica(system, batch, per_replica, tmp_path, capsys):
    rc = main(["--system", system, "--dataset", "synthetic-small", "--batch-size", str(batch), "--seed", "0",
               "--dry-run", "--results-dir", str(tmp_path)])
    out = " ".join(capsys.readouterr().out.split())
    assert rc == 0
    assert f"global batch {batch} ({per_replica} per replica)" in out


@pytest.mark.parametrize("system, replicas", [("cpu-mirrored-x2", 2), ("tpu-v4-8", 4)])
def test_profile_whose_batch_does_not_divide_is_rejected(system, replicas, tmp_path):
    path = tmp_path / f"{system}.json"
    shutil.copy(DEFAULT_SYSTEMS_DIR / f"{system}.json", path)
    data = json.loads(path.read_text())
    data["harness"]["global_batch_size"] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert message.startswith(str(path)) or path.name in message
    assert f"must divide evenly by the {replicas} replicas" in message
    assert "\n" not in message


def test_mirrored_test_profile_is_one_host_with_two_logical_cpus():
    profile = load_profile("cpu-mirrored-x2")
    h = profile.harness
    assert (h.device, h.strategy, h.num_hosts, h.devices_per_host) == ("cpu", "mirrored", 1, 2)
    assert h.per_replica_batch_size * 2 == h.global_batch_size
    assert profile.description["accelerators_per_node"] == "0"
