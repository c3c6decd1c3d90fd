"""The harness's TensorFlow runtime environment (harness.core.tf_runtime): a caching CPU allocator.

Why: without it, every buffer above glibc's 32 MB mmap threshold is fresh memory each time, and
a training step at ml-20m size spent most of its kernel time zeroing pages (the module
docstring has the figures). These tests check that the setting is applied before TensorFlow
starts, that a user's own value wins, that other programs (the peer) get the user's
environment, and, by counting page faults in a subprocess, that TensorFlow then really reuses
a large buffer instead of faulting it in again.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.core import tf_runtime
from support.paths import REPO

KEY = "TF_CPU_ALLOCATOR_USE_BFC"


@pytest.fixture
def clean(monkeypatch):
    monkeypatch.setattr(tf_runtime, "_USER_ENVIRONMENT", {})
    monkeypatch.delenv(KEY, raising=False)
    return monkeypatch


def test_the_allocator_setting_is_added_and_kept_from_other_programs(clean):
    tf_runtime.apply_runtime_environment()
    assert os.environ[KEY] == "true"
    assert KEY not in tf_runtime.user_environment()
    tf_runtime.apply_runtime_environment()             # twice: still the user's (empty) original
    assert KEY not in tf_runtime.user_environment()


def test_a_users_own_setting_wins(clean):
    clean.setenv(KEY, "false")
    tf_runtime.apply_runtime_environment()
    assert os.environ[KEY] == "false"
    assert tf_runtime.user_environment()[KEY] == "false"


FAULTS_PROBE = """
import json, resource, sys
sys.path.insert(0, {repo!r})
from harness.core.tf_runtime import apply_runtime_environment, start_tensorflow
apply_runtime_environment()
tf = start_tensorflow()
big = tf.function(lambda x: tf.reduce_sum(tf.tile(x, [4096, 1]) * 2.0))   # a fresh 64 MB temporary per call
x = tf.ones([1, 4096])
big(x).numpy()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    big(x).numpy()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10))
"""


def faults_per_call(allocator: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != KEY}
    if allocator is not None:
        env[KEY] = allocator
    out = subprocess.run([sys.executable, "-c", FAULTS_PROBE.format(repo=str(REPO))], capture_output=True,
                         text=True, env=env, timeout=300, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_large_buffers_are_reused_instead_of_faulted_in_again():
    pages = 64 * 2**20 / os.sysconf("SC_PAGE_SIZE")
    control = faults_per_call("false")
    if control < pages / 2:
        pytest.skip(f"this machine's malloc reuses 64 MB buffers by itself ({control:.0f} faults per call)")
    assert faults_per_call(None) < pages / 20, "the harness's default must reuse the buffer"
