"""Provenance: enough about the code, the software and the machine to trust (or doubt) a result.

Every log and run summary carries this, so a result from another machine can be compared
like for like: same harness commit? same TensorFlow build? same kind of CPU, same ISA?
Nothing here identifies the machine by name: the host fingerprint hashes the CPU model, core
counts and memory size, never the hostname.

`collect_provenance()` imports TensorFlow (version, build flags, threads, devices);
`host_fingerprint()` and `collect_provenance(tensorflow=False)` do not, for `check`/`report`.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from harness.core.paths import REPO_ROOT
from harness import __version__
from harness.distribute.hardware import TENSORFLOW_DISTRIBUTIONS, host_info, package_version

# Environment variables that change how many threads (and which kernels and allocator) TensorFlow uses.
RUNTIME_ENV_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                        "KMP_AFFINITY", "KMP_BLOCKTIME", "TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS",
                        "TF_CPU_ALLOCATOR_USE_BFC", "TF_CPU_BFC_MEM_LIMIT_IN_MB")
# Untracked files here change what runs, so they make the tree dirty; elsewhere (results, new
# system descriptions written by runs) they do not.
CODE_PATHS = ("harness", "reference", "run_benchmark.py", "pyproject.toml")


def _git(repo: Path, *args: str) -> str | None:
    """Output of a git command in `repo`, or None when git or the repository is unavailable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=10, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_commit(repo: str | os.PathLike = REPO_ROOT) -> str:
    """HEAD's commit, with "+dirty" when tracked files changed or untracked code files exist;
    "unknown" outside git (or before the first commit)."""
    repo = Path(repo)
    head = _git(repo, "rev-parse", "--verify", "HEAD")
    if not head:
        return "unknown"
    tracked = _git(repo, "status", "--porcelain", "--untracked-files=no")
    untracked_code = _git(repo, "ls-files", "--others", "--exclude-standard", "--", *CODE_PATHS)
    dirty = bool((tracked or "").strip() or (untracked_code or "").strip())
    return head.strip() + ("+dirty" if dirty else "")


def host_fingerprint() -> str:
    """Short hash of CPU model, core counts and memory size (no hostname; no TensorFlow)."""
    return host_info()["fingerprint"]


def _usable_cpus() -> int:
    """CPUs this process may run on (affinity, e.g. taskset or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _thread_settings() -> dict[str, Any]:
    return {"usable_cpus": _usable_cpus(),
            "env": {k: os.environ[k] for k in RUNTIME_ENV_VARIABLES if k in os.environ}}


def _tensorflow() -> dict[str, Any]:
    import tensorflow as tf

    build = {k: (list(v) if isinstance(v, (list, tuple)) else v)
             for k, v in tf.sysconfig.get_build_info().items()}
    return {
        "tensorflow_version": tf.__version__,
        "tensorflow_git_version": getattr(tf.version, "GIT_VERSION", "unknown"),
        "tensorflow_build": {
            **build,
            "built_with_cuda": bool(tf.test.is_built_with_cuda()),
            "built_with_xla": bool(tf.test.is_built_with_xla()),
            "built_with_rocm": bool(tf.test.is_built_with_rocm()),
        },
        "tensorflow_threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    }


def collect_provenance(tensorflow: bool = True,
                       accelerators: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions, commit, host and (with `tensorflow`) TensorFlow build, threads and devices.

    Thread counts of 0 mean TensorFlow's default (all usable cores). Pass `accelerators` when
    the caller already ran `hardware.detect_accelerators()`, to avoid listing devices twice.
    """
    host = host_info()
    result: dict[str, Any] = {
        "harness_version": __version__,
        "git_commit": git_commit(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "numpy_version": package_version("numpy"),
        "numba_version": package_version("numba"),  # compiles the epoch sampler (same draws as numpy)
        "mlperf_logging_version": package_version("mlperf-logging", "mlperf_logging"),
        "host_fingerprint": host["fingerprint"],
        "host": host,  # CPU model, cores, ISA flags of interest, memory, OS (no hostname)
        "threads": _thread_settings(),
    }
    if not tensorflow:
        result["tensorflow_version"] = package_version(*TENSORFLOW_DISTRIBUTIONS) or "unknown"
        return result
    from harness.distribute.hardware import detect_accelerators

    tf_facts = _tensorflow()
    result["tensorflow_version"] = tf_facts.pop("tensorflow_version")
    result.update(tf_facts)
    result["threads"]["tensorflow"] = result.pop("tensorflow_threads")
    result["accelerators"] = accelerators if accelerators is not None else detect_accelerators()
    return result
