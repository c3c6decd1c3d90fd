"""What machine are we on, and is the hardware a profile declares really here?

Two layers, because `systems`, `check` and `report` must stay instant:
- host facts from psutil, platform, /proc/cpuinfo and sysfs (no TensorFlow): `host_info()`;
- accelerators as TensorFlow sees them (imports TensorFlow): `detect_accelerators()`, and the
  pre-init gate `check_declared_hardware()`.

The gate must answer within a bounded time on any machine: a TPU name that the metadata server
never resolves, or a TPU master that never answers (TPUClusterResolver retries 120 times), must
not hang a benchmark run. So the TPU probe runs in a child process that is killed at the
deadline, and the GPU listing runs in a daemon thread with a timeout.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import psutil

from harness.core.errors import UserError
from harness.core.paths import REPO_ROOT
from harness.core.timeouts import TIMEOUT, call_with_timeout
from harness.distribute.strategy import tf_config_from_flags

ISA_FLAGS_OF_INTEREST = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                         "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
                         "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
# Environment variables through which TPUClusterResolver finds a TPU (tensorflow tpu client).
TPU_ENV_VARIABLES = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG")
DEFAULT_TIMEOUT_S = 20.0


# --------------------------------------------------------------------------------------------
# Host facts (no TensorFlow)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo() -> dict[str, Any]:
    """Model, sockets, nominal MHz and ISA flags from /proc/cpuinfo (Linux; empty elsewhere)."""
    model, mhz, flags, sockets = "", 0.0, set(), set()
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model") and not model:
            model = value
        elif key == "cpu MHz" and not mhz:
            mhz = float(value or 0)
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "physical id":
            sockets.add(value)
    return {"model": model, "mhz": mhz, "flags": flags, "sockets": max(1, len(sockets))}


def _caches() -> list[tuple[int, str, int]]:
    """(level, type, size in KiB) of CPU 0's caches, from sysfs."""
    found = []
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        level, kind, size = (_read(f"{index}/{name}").strip() for name in ("level", "type", "size"))
        match = re.fullmatch(r"(\d+)([KMG]?)", size)
        if not (level.isdigit() and match):
            continue
        scale = {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[match.group(2)]
        found.append((int(level), kind, int(int(match.group(1)) * scale)))
    return found


def _format_kib(kib: int) -> str:
    if kib >= 1024 and kib % 1024 == 0:
        return f"{kib // 1024} MiB"
    return f"{kib} KiB"


def _format_caches(caches: list[tuple[int, str, int]]) -> str:
    parts = []
    for level, kind, kib in caches:
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        parts.append(f"L{level}{suffix} {_format_kib(kib)}")
    return ", ".join(parts)


def _os_name() -> str:
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        pretty = ""
    kernel = f"{platform.system()} {platform.release()}".strip()
    return f"{pretty} ({kernel})" if pretty else kernel


@functools.lru_cache(maxsize=1)
def host_info() -> dict[str, Any]:
    """Facts about this host that do not need TensorFlow, plus a short hostname-free fingerprint.

    The fingerprint hashes CPU model, core counts and memory (rounded to GiB), so runs on the
    same kind of machine share it and runs on different machines do not.
    """
    info = _cpuinfo()
    freq = psutil.cpu_freq()
    mhz = (freq.max or freq.current) if freq else 0.0
    logical = psutil.cpu_count(logical=True) or 1
    physical = psutil.cpu_count(logical=False) or logical
    memory = psutil.virtual_memory().total
    try:
        storage = psutil.disk_usage(str(REPO_ROOT)).total
    except OSError:
        storage = 0
    model = info["model"] or platform.processor() or platform.machine() or "unknown CPU"
    memory_gib = round(memory / 2**30)
    key = f"{model}|{physical}|{logical}|{memory_gib}"
    return {
        "cpu_model": model,
        "sockets": info["sockets"],
        "physical_cores": physical,
        "logical_cpus": logical,
        "frequency_mhz": round(mhz or info["mhz"]),
        "caches": _format_caches(_caches()),
        "cpu_isa": [f for f in ISA_FLAGS_OF_INTEREST if f in info["flags"]],
        "memory_bytes": memory,
        "storage_bytes": storage,
        "os": _os_name(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "fingerprint": hashlib.sha256(key.encode()).hexdigest()[:12],
    }


def package_version(*names: str) -> str | None:
    """Installed version of the first distribution found among `names` (no import)."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-tpu", "tf-nightly")


def detected_description_values(host: dict[str, Any], num_hosts: int = 1) -> dict[str, str]:
    """Values for every system-description field that a profile may leave as "detect".

    Multi-host profiles get this host's values (the other hosts are declared identical).
    """
    from harness import __version__

    sockets = host["sockets"]
    gib = host["memory_bytes"] / 2**30
    memory = f"{gib:.1f} GiB" if gib < 10 else f"{gib:.0f} GiB"
    storage = f"{host['storage_bytes'] / 1e9:.0f} GB" if host["storage_bytes"] else "unknown"
    tf_version = package_version(*TENSORFLOW_DISTRIBUTIONS)
    stack = [f"Python {host['python']}", f"numpy {package_version('numpy')}",
             f"mlperf-logging {package_version('mlperf-logging', 'mlperf_logging')}",
             f"ncf-benchmark {__version__}"]
    return {
        "system_name": (f"{num_hosts}x " if num_hosts > 1 else "")
                       + f"{host['cpu_model']} ({host['logical_cpus']} vCPUs)",
        "host_processors_per_node": str(sockets),
        "host_processor_model_name": host["cpu_model"],
        "host_processor_core_count": str(max(1, host["physical_cores"] // sockets)),
        "host_processor_vcpu_count": str(host["logical_cpus"]),
        "host_processor_frequency": f"{host['frequency_mhz']} MHz" if host["frequency_mhz"]
                                    else "unknown",
        "host_processor_caches": host["caches"] or "unknown",
        "host_memory_capacity": memory,
        "host_storage_capacity": storage,
        "framework": f"TensorFlow {tf_version}" if tf_version else "TensorFlow (not installed)",
        "operating_system": host["os"],
        "other_software_stack": ", ".join(stack),
    }


# --------------------------------------------------------------------------------------------
# bf16 instructions (no TensorFlow)

# cpuinfo flag -> the name a message uses. Without one of them a CPU only emulates bf16 products
# (widening to fp32), which runs slower than fp32 itself (docs/performance.md, "bf16 on CPUs").
BF16_INSTRUCTIONS = {"avx512_bf16": "AVX512_BF16", "amx_bf16": "AMX-BF16"}
ALLOW_EMULATED_BF16_FLAG = "--allow-emulated-bf16"


@dataclass(frozen=True)
class Bf16Verdict:
    """Whether a plan may run bf16 compute on this CPU: the gate's answer, for the plan and the run."""

    needed: bool                 # bf16 compute (mixed_bfloat16) on a CPU device
    cpu: str                     # the CPU's model name, as a message names it
    present: tuple[str, ...]     # bf16 instruction sets found (BF16_INSTRUCTIONS' names)
    allowed: bool                # --allow-emulated-bf16 given

    @property
    def passes(self) -> bool:
        return not self.needed or bool(self.present) or self.allowed

    def describe(self) -> str:
        """One line for the plan (`--dry-run` shows it)."""
        if not self.needed:
            return "not needed (no bf16 compute on a CPU)"
        if self.present:
            return f"passes: this {self.cpu} has {' and '.join(self.present)}"
        state = f"allowed by {ALLOW_EMULATED_BF16_FLAG}" if self.allowed else "refuses"
        return f"{state}: this {self.cpu} has neither AVX512_BF16 nor AMX-BF16, so bf16 is emulated"

    def refusal(self, system: str) -> str:
        """The UserError sentence when the gate does not pass."""
        return (f"profile {system} needs a CPU with AVX512_BF16 or AMX-BF16 (this {self.cpu} has neither; "
                f"emulated bf16 is slower than fp32): pass {ALLOW_EMULATED_BF16_FLAG} to run it anyway.")


def bf16_verdict(precision: str, device: str, allow_emulated: bool,
                 cpuinfo: dict[str, Any] | None = None) -> Bf16Verdict:
    """The bf16 gate for a plan, from /proc/cpuinfo (or `cpuinfo`, as `_cpuinfo` returns it)."""
    info = _cpuinfo() if cpuinfo is None else cpuinfo
    cpu = info["model"] or platform.processor() or "CPU"
    present = tuple(name for flag, name in BF16_INSTRUCTIONS.items() if flag in info["flags"])
    return Bf16Verdict(precision == "mixed_bfloat16" and device == "cpu", cpu, present, bool(allow_emulated))


# --------------------------------------------------------------------------------------------
# Accelerators as TensorFlow sees them


def detect_accelerators(timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """GPUs (and local TPU devices) that TensorFlow lists, plus TensorFlow's CUDA build facts.

    Imports TensorFlow. Listing devices initialises the GPU driver, which can hang on a broken
    driver; it runs in a daemon thread and gives up after `timeout_s` with an "error" entry.
    """
    import tensorflow as tf

    build = dict(tf.sysconfig.get_build_info())
    result: dict[str, Any] = {
        "built_with_cuda": bool(tf.test.is_built_with_cuda()),
        "cuda_version": build.get("cuda_version"),
        "cudnn_version": build.get("cudnn_version"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": [], "tpus": [], "error": None,
    }

    def listing() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {"gpus": [], "tpus": []}
        for device in tf.config.list_physical_devices("GPU"):
            try:
                details = tf.config.experimental.get_device_details(device)
            except Exception:  # noqa: BLE001 - details are optional
                details = {}
            found["gpus"].append({"name": device.name,
                                  "model": details.get("device_name", "unknown"),
                                  "compute_capability": details.get("compute_capability")})
        for device in tf.config.list_physical_devices("TPU"):
            found["tpus"].append({"name": device.name})
        return found

    ok, value = call_with_timeout(listing, timeout_s, name="ncf-hardware-probe")
    if ok:
        result.update(value)
    else:
        result["error"] = (f"device listing did not finish within {timeout_s:g} s"
                           if value == TIMEOUT else f"{type(value).__name__}: {value}")
    return result


# --------------------------------------------------------------------------------------------
# The pre-init hardware gate


def _gpu_device_nodes() -> list[str]:
    """Device files a GPU driver creates (NVIDIA, ROCm, WSL2); none means no usable GPU."""
    return sorted(glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/kfd") + glob.glob("/dev/dxg"))


def _tpu_device_nodes() -> list[str]:
    """Device files of TPUs attached to this VM (TPU VMs); empty on a TPU-node client."""
    return sorted(glob.glob("/dev/accel[0-9]*") + glob.glob("/dev/vfio/[0-9]*"))


def _check_gpus(profile: Any, timeout_s: float) -> dict[str, Any]:
    need = profile.harness.devices_per_host
    what = (f"System {profile.name} expects {need} GPU{'s' if need > 1 else ''} per host "
            "(tf.config.list_physical_devices('GPU'))")
    nodes = _gpu_device_nodes()
    if not nodes:
        raise UserError(f"{what}, found none: this machine has no GPU device files "
                        "(/dev/nvidia*), so no GPU driver is loaded.")
    accelerators = detect_accelerators(timeout_s)
    gpus = accelerators["gpus"]
    if accelerators["error"]:
        reason = accelerators["error"]
    elif not accelerators["built_with_cuda"]:
        reason = "this TensorFlow build has no CUDA support (install tensorflow[and-cuda])"
    else:
        reason = (f"TensorFlow lists {len(gpus)} (device files: {', '.join(nodes)}; "
                  f"CUDA_VISIBLE_DEVICES={accelerators['cuda_visible_devices']})")
    if len(gpus) < need:
        found = "none" if not gpus else f"only {len(gpus)}"
        raise UserError(f"{what}, found {found}: {reason}.")
    return {"expected_devices": need, "found_devices": len(gpus), "accelerators": accelerators}


def resolve_tpu_name(profile: Any, tpu_name: str | None = None,
                     environ: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """The `tpu=` argument for TPUClusterResolver and where it came from.

    Order: the --tpu flag, the profile's harness.tpu.name, the environment variables the TPU
    client reads (TPU_NAME, KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS, TPU_CONFIG; passed as None so the
    client applies its own rules), then "local" when TPU device files are attached to this VM.
    (None, reason) when there is nothing to connect to.
    """
    env = os.environ if environ is None else environ
    if tpu_name:
        return tpu_name, "--tpu"
    declared = profile.harness.tpu.name if profile.harness.tpu else None
    if declared:
        return declared, f"harness.tpu.name in {profile.path.name}"
    for variable in TPU_ENV_VARIABLES:
        if env.get(variable):
            return None, f"environment variable {variable}"
    if _tpu_device_nodes():
        return "local", "local TPU devices (" + ", ".join(_tpu_device_nodes()) + ")"
    return None, ""


def _probe_tpu_in_child(tpu: str | None, timeout_s: float) -> dict[str, Any]:
    """Run `_tpu_probe` in a fresh interpreter, killed at the deadline (a hung gRPC or metadata
    call cannot be interrupted inside this process)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cmd = [sys.executable, "-m", "harness.distribute.hardware", "probe-tpu", json.dumps(tpu)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env,
                              cwd=str(REPO_ROOT), start_new_session=True, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"no answer within {timeout_s:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "error": f"the probe exited with code {proc.returncode}: {tail}"}


def _tpu_probe(tpu: str | None) -> dict[str, Any]:
    """Connect with TPUClusterResolver and count TPU cores (runs in the child process)."""
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu == "local":
            cores = len(tf.config.list_physical_devices("TPU"))
            if not cores:  # some TPU VM runtimes list TPUs only once the system is initialised
                tf.config.experimental_connect_to_cluster(resolver)
                tf.tpu.experimental.initialize_tpu_system(resolver)
                cores = len(tf.config.list_logical_devices("TPU"))
            return {"ok": cores > 0, "cores": cores, "workers": 1, "master": "local",
                    **({} if cores else {"error": "TensorFlow lists no local TPU devices"})}
        spec = resolver.cluster_spec().as_dict()
        workers = len(spec.get(resolver.task_type, [])) or 1
        per_worker = resolver.num_accelerators().get("TPU", 0)
        return {"ok": per_worker > 0, "cores": per_worker * workers, "workers": workers,
                "master": resolver.master(),
                **({} if per_worker else {"error": f"no TPU devices answered at {resolver.master()} "
                                                   "(is the address right and the TPU ready?)"})}
    except Exception as exc:  # noqa: BLE001 - the reason goes into the user's error message
        text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
        if type(exc).__name__ == "URLError":  # the Cloud TPU client's project/zone lookup
            text += (" (a TPU name is resolved through the Google Cloud metadata server; off "
                     "Google Cloud give the TPU's address as grpc://IP:8470)")
        return {"ok": False, "error": text}


def _check_tpu(profile: Any, tpu_name: str | None, timeout_s: float) -> dict[str, Any]:
    need = profile.num_replicas
    tpu, source = resolve_tpu_name(profile, tpu_name)
    shown = "tpu=" + (repr(tpu) if tpu else f"None via {source}" if source else "None")
    what = f"System {profile.name} expects {need} TPU cores (TPUClusterResolver {shown})"
    if not source:
        raise UserError(f"{what}, found none: no --tpu NAME, no harness.tpu.name, none of "
                        f"{', '.join(TPU_ENV_VARIABLES)} is set, and no TPU devices are attached "
                        "(/dev/accel*, /dev/vfio).")
    probe = _probe_tpu_in_child(tpu, timeout_s)
    if not probe.get("ok"):
        raise UserError(f"{what}, found none: {probe.get('error', 'no answer')}.")
    if probe["cores"] != need:
        raise UserError(f"{what}, found {probe['cores']} on {probe['workers']} worker(s); "
                        "pick the profile that matches this TPU slice.")
    return {"expected_devices": need, "found_devices": probe["cores"],
            "tpu": {"name": tpu, "source": source, **probe}}


def check_cluster(profile: Any, worker_hosts: Sequence[str] | str | None = None,
                  task_index: int | None = None) -> dict[str, Any]:
    """Validate the multi-worker cluster (flags, else TF_CONFIG) against the profile's num_hosts.

    Only checks what is given (worker count, HOST:PORT shape, task index); whether the other
    hosts answer is up to the collective's own timeout (harness.distribute.strategy).
    """
    hosts = profile.harness.num_hosts
    if isinstance(worker_hosts, str):
        worker_hosts = [h.strip() for h in worker_hosts.split(",") if h.strip()]
    if task_index is not None and not worker_hosts:
        raise UserError("--task-index needs --worker-hosts (the comma-separated HOST:PORT list).")
    config = tf_config_from_flags(worker_hosts, task_index)
    if config is None:
        if hosts > 1:
            raise UserError(f"System {profile.name} runs on {hosts} hosts and needs the cluster: "
                            "set TF_CONFIG or pass --worker-hosts HOST:PORT,... and --task-index N, "
                            "found neither.")
        return {"num_hosts": 1, "source": None, "task_type": "worker", "task_index": 0,
                "workers": [], "is_chief": True}
    source = "--worker-hosts" if worker_hosts else "TF_CONFIG"
    cluster, task = config["cluster"], config["task"]
    members = [*cluster.get("chief", []), *cluster["worker"]]
    if len(members) != hosts:
        raise UserError(f"System {profile.name} expects {hosts} host{'s' if hosts > 1 else ''}, "
                        f"but {source} lists {len(members)} (chief + workers).")
    bad = [m for m in members if not re.fullmatch(r"[^\s:]+:\d{1,5}", str(m))]
    if bad:
        raise UserError(f"{source} has a worker address that is not HOST:PORT: {bad[0]!r}.")
    task_type, index = task.get("type", "worker"), task["index"]
    size = len(cluster.get(task_type, [])) if task_type in ("chief", "worker") else 0
    if not (isinstance(index, int) and not isinstance(index, bool) and 0 <= index < size):
        raise UserError(f"{source} task {task_type!r} index {index!r} is not one of the "
                        f"{size} {task_type} entries.")
    is_chief = task_type == "chief" or (index == 0 and not cluster.get("chief"))
    return {"num_hosts": hosts, "source": source, "task_type": task_type, "task_index": index,
            "workers": members, "is_chief": is_chief}


def check_declared_hardware(profile: Any, tpu_name: str | None = None,
                            timeout_s: float = DEFAULT_TIMEOUT_S,
                            worker_hosts: Sequence[str] | str | None = None,
                            task_index: int | None = None) -> dict[str, Any]:
    """Raise UserError (what was expected, what was found, why) unless the declared hardware is
    here; return what was found. Bounded by about `timeout_s` (plus the cluster check, instant).

    cpu: nothing to find; gpu: at least devices_per_host GPUs; tpu: TPUClusterResolver must
    answer with exactly the declared core count; num_hosts > 1: TF_CONFIG or the worker flags
    must describe that many workers.
    """
    device = profile.harness.device
    found: dict[str, Any] = {"system": profile.name, "device": device,
                             "expected_devices": profile.num_replicas if device == "tpu"
                             else profile.harness.devices_per_host}
    if device == "gpu":
        found.update(_check_gpus(profile, timeout_s))
    elif device == "tpu":
        found.update(_check_tpu(profile, tpu_name, timeout_s))
    else:
        found["found_devices"] = profile.harness.devices_per_host
    if device != "tpu":  # TPU slices are described by the resolver, not TF_CONFIG
        found["cluster"] = check_cluster(profile, worker_hosts, task_index)
    return found


if __name__ == "__main__":
    # Child-process entry of the TPU probe: `python -m harness.distribute.hardware probe-tpu <json name>`.
    if len(sys.argv) == 3 and sys.argv[1] == "probe-tpu":
        print(json.dumps(_tpu_probe(json.loads(sys.argv[2]))), flush=True)
    else:
        raise SystemExit("usage: python -m harness.distribute.hardware probe-tpu '<tpu name as JSON>'")
