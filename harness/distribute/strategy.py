"""Build the tf.distribute strategy a system profile declares.

One run loop serves every topology; only this module knows how each strategy is made:
  default                 the default strategy (one device, no distribution overhead)
  one_device              OneDeviceStrategy on the profile's first device
  mirrored                MirroredStrategy over the host's GPUs (or logical CPUs, for tests)
  multi_worker_mirrored   MultiWorkerMirroredStrategy over hosts named by --worker-hosts/--task-index,
                          TF_CONFIG or a Slurm step (harness.distribute.cluster picks the source;
                          TensorFlow's TFConfig- or SlurmClusterResolver builds the cluster), with
                          bounded failure detection (below)
  tpu                     TPUStrategy on a slice reached through TPUClusterResolver

How long a multi-worker run waits for a peer that is gone (measured with two workers on one
2-core machine, tests/distribute/test_distributed_multiworker.py):
  * a worker that dies (crash, kill, lost host) while a peer exchanges data with it: the peer's
    collective fails at once on the refused connection (2-5 s from the kill to the survivor's exit);
    otherwise the coordination service (hosted by the chief) declares it dead after
    HEARTBEAT_TIMEOUT_S of silence and aborts every surviving worker's collectives (~12 s);
  * a worker that freezes (stopped process, hung host): the same heartbeats, ~10-11 s, whether
    the frozen one is a worker (the chief's service notices) or the chief (the others' heartbeat
    calls to it time out);
  * a worker that is alive and heartbeating but never reaches the collective (stuck in Python,
    far slower than its peers): the collective itself gives up after COLLECTIVE_TIMEOUT_S.
So a surviving worker fails within FAILURE_DETECTION_BOUND_S (plus closing its log and exiting),
and `describe_distributed_failure` turns TensorFlow's error into one line naming the cause.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

from harness.core.errors import UserError
from harness.core.timeouts import TIMEOUT, call_with_timeout
from harness.distribute.cluster import (ClusterRequest, WorkerCluster, check_task_count, read_slurm_step,
                                        resolve_cluster, tf_config_from_flags)

# A collective that waits longer than this fails (DeadlineExceededError). It must exceed the
# longest legitimate gap between two workers reaching the same collective (the chief's log
# check between runs, one host generating an epoch's negatives a little later than another).
COLLECTIVE_TIMEOUT_S = 60
# A worker whose heartbeats stop for this long is declared dead by the coordination service
# (the chief's process hosts it) and every other worker's collectives are aborted.
HEARTBEAT_TIMEOUT_S = 10
# How long workers wait for each other to join the cluster at start-up: hosts load (or first
# download and prepare) the dataset before joining, which can take minutes on a cold cache.
CLUSTER_JOIN_TIMEOUT_S = 900
# How long a finishing worker waits at exit for the others (the chief checks its log and writes
# the summary after the last collective), so a dead peer cannot hold up the exit either.
SHUTDOWN_BARRIER_TIMEOUT_S = 120
# The bound on how long a surviving worker keeps waiting for a dead or silent peer.
FAILURE_DETECTION_BOUND_S = max(COLLECTIVE_TIMEOUT_S, 2 * HEARTBEAT_TIMEOUT_S)
# Connecting to and initialising a TPU slice that answered the pre-init probe
# (harness.distribute.hardware) normally takes seconds; past this it is treated as not answering.
TPU_INIT_TIMEOUT_S = 300


@dataclass(frozen=True)
class Topology:
    """Where this process sits in the job: replica and host counts, and whether it is the chief."""

    num_replicas: int
    num_hosts: int
    task_index: int
    is_chief: bool


def build_strategy(kind: str, device: str, devices_per_host: int, num_hosts: int,
                   tpu_name: str | None = None, worker_hosts: Sequence[str] | None = None,
                   task_index: int | None = None,
                   cluster: ClusterRequest | None = None) -> tuple[Any, Topology]:
    """Create the strategy (importing TensorFlow) and describe this process' place in it.

    `cluster` is the plan's --cluster/--cluster-port request (None: auto, port 8888).
    """
    import tensorflow as tf

    if kind == "default":
        return tf.distribute.get_strategy(), Topology(1, 1, 0, True)
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy(f"/{device}:0"), Topology(1, 1, 0, True)
    if kind == "mirrored":
        kind_name = "GPU" if device == "gpu" else "CPU"
        found = tf.config.list_logical_devices(kind_name)
        if len(found) < devices_per_host:
            raise UserError(f"The profile needs {devices_per_host} {kind_name} devices for MirroredStrategy, "
                            f"found {len(found)}.")
        strategy = tf.distribute.MirroredStrategy([d.name for d in found[:devices_per_host]])
        return strategy, Topology(strategy.num_replicas_in_sync, 1, 0, True)
    if kind == "multi_worker_mirrored":
        return _multi_worker_strategy(device, devices_per_host, num_hosts, worker_hosts, task_index,
                                      cluster or ClusterRequest())
    if kind == "tpu":
        return _tpu_strategy(tpu_name, num_hosts)
    raise UserError(f"Unknown strategy {kind!r}.")


def _multi_worker_strategy(device: str, devices_per_host: int, num_hosts: int,
                           worker_hosts: Sequence[str] | None, task_index: int | None,
                           request: ClusterRequest) -> tuple[Any, Topology]:
    """MultiWorkerMirroredStrategy over the cluster `request` selects (harness.distribute.cluster)."""
    import tensorflow as tf

    cluster = resolve_cluster(request, worker_hosts, task_index, num_hosts, os.environ)
    if cluster is None:
        raise UserError("A multi-worker profile needs TF_CONFIG or --worker-hosts and --task-index, or one "
                        "Slurm task per host started by srun; found none.")
    check_task_count(cluster, num_hosts, "The profile")
    if cluster.source == "slurm":
        resolver = slurm_resolver(cluster, request.port, devices_per_host if device == "gpu" else 0)
    else:
        os.environ["TF_CONFIG"] = json.dumps(tf_config_from_flags(worker_hosts, task_index))
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    _configure_coordination_service(resolver.cluster_spec())
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
    return strategy, Topology(strategy.num_replicas_in_sync, len(cluster.workers), cluster.host_index,
                              cluster.is_chief)


def slurm_resolver(cluster: WorkerCluster, port: int, gpus_per_task: int) -> Any:
    """TensorFlow's SlurmClusterResolver for this step, checked against `cluster`, as the strategy's resolver.

    The resolver numbers a node's tasks by GPU slots (gpus_per_node // gpus_per_task of them) and
    by default counts GPUs with nvidia-smi and sets CUDA_VISIBLE_DEVICES; here each task gets one
    slot and auto_set_gpu is off (on CPU hosts there is nothing to count, and on GPU hosts Slurm's
    --gpus-per-task binds the devices). Its num_accelerators() would then report the slot as a GPU,
    so the strategy gets the same cluster through a SimpleClusterResolver with the profile's count.
    """
    import tensorflow as tf

    step = read_slurm_step(os.environ)
    slurm = tf.distribute.cluster_resolver.SlurmClusterResolver(
        port_base=port, gpus_per_node=step.max_tasks_per_node, gpus_per_task=1, auto_set_gpu=False)
    spec = slurm.cluster_spec()
    task_type, task_id = slurm.get_task_info()
    found = tuple(spec.as_dict().get("worker", ()))
    if (found, task_type, task_id) != (cluster.workers, cluster.task_type, cluster.task_index):
        raise RuntimeError(f"SlurmClusterResolver resolved workers {list(found)} with this task as {task_type} "
                           f"{task_id}, but the plan has {list(cluster.workers)} and worker {cluster.task_index}")
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=task_type, task_id=task_id, rpc_layer=slurm.rpc_layer,
        num_accelerators={"GPU": gpus_per_task} if gpus_per_task else None)


def _configure_coordination_service(cluster_spec: Any) -> None:
    """The coordination service (what MultiWorkerMirroredStrategy would set up itself) with this
    module's timeouts instead of TensorFlow's defaults, so the failure bound is ours to state.

    Must run before anything initialises TensorFlow's eager context (it configures the server
    the context starts); `harness.runner` builds the strategy before any other TF work.
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    ctx = context.context()
    if ctx.coordination_service is not None:
        return
    if ctx._context_handle is not None:  # noqa: SLF001 - no public "is initialised" accessor
        raise RuntimeError("TensorFlow was initialised before the multi-worker strategy was built; "
                           "its failure timeouts could not be applied")
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster_spec.num_tasks(job))
            for job in ("chief", "worker") if job in cluster_spec.jobs]
    ctx.configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        enable_health_check=True,
        cluster_register_timeout_in_ms=CLUSTER_JOIN_TIMEOUT_S * 1000,
        heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_S * 1000,
        shutdown_barrier_timeout_in_ms=SHUTDOWN_BARRIER_TIMEOUT_S * 1000,
        coordinated_jobs=jobs,
    )


def _tpu_strategy(tpu_name: str | None, num_hosts: int) -> tuple[Any, Topology]:
    """TPUStrategy; a TPU that cannot be resolved or does not answer is a UserError, in bounded time."""
    import tensorflow as tf

    shown = f"tpu={tpu_name!r}" if tpu_name else "tpu=None (TPU_NAME and the other TPU environment variables)"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name)
    except Exception as exc:  # noqa: BLE001 - ValueError (no name), URLError (no metadata server)...
        raise UserError(f"TPUClusterResolver({shown}) found no TPU: {_first_line(exc)}.") from exc

    def connect() -> None:
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)

    ok, value = call_with_timeout(connect, TPU_INIT_TIMEOUT_S, name="ncf-tpu-connect")
    if not ok:
        reason = f"no answer within {TPU_INIT_TIMEOUT_S} s" if value == TIMEOUT else _first_line(value)
        raise UserError(f"The TPU at {resolver.master() or shown} did not initialise: {reason}.")
    strategy = tf.distribute.TPUStrategy(resolver)
    return strategy, Topology(strategy.num_replicas_in_sync, max(1, num_hosts), 0, True)


# --------------------------------------------------------------------------------------------
# Turning a failed collective into one line


_PEER_FAILURES: tuple[tuple[str, str], ...] = (
    # (pattern in TensorFlow's error text, what it means for the user)
    (r"tasks are unhealthy \(stopped sending heartbeats\):\s*(\S+)",
     "{0} stopped sending heartbeats for {hb} s (it crashed, was killed or froze)"),
    (r"Collective has timed out",
     "a collective waited more than {ct} s for another worker (it stopped answering)"),
    (r"CoordinationService/Heartbeat|Failed to send RPC to coordination service",
     "the chief (coordination service) stopped answering heartbeats (it crashed, was killed or froze)"),
    (r"Connection refused|failed to connect to all addresses|Socket closed|Connection reset",
     "another worker is unreachable (connection refused: its process is gone)"),
    (r"cluster check alive failed, (\S+) is down", "{0} is down"),
)


def describe_distributed_failure(exc: BaseException) -> str | None:
    """One line saying which peer failed and how, for errors of a multi-worker collective.

    TensorFlow's own message starts with "Graph execution error:" and buries the cause among
    node stacks; this finds the cause. None when `exc` is not a peer or collective failure.
    """
    name = type(exc).__name__
    if name not in ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError",
                    "InternalError"):
        return None
    text = str(exc)
    for pattern, meaning in _PEER_FAILURES:
        match = re.search(pattern, text)
        if match:
            peer = _short_task(match.group(1)) if match.groups() else ""
            detail = meaning.format(peer, hb=HEARTBEAT_TIMEOUT_S, ct=COLLECTIVE_TIMEOUT_S)
            return f"multi-worker run lost a peer: {detail} ({name})"
    if name in ("InternalError", "CancelledError"):
        return None
    return f"multi-worker collective failed ({name}: {_first_line(exc)})"


def _short_task(task: str) -> str:
    """'/job:worker/replica:0/task:1' -> 'worker 1' (the --task-index of that worker)."""
    match = re.search(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)", task)
    return f"{match.group(1)} {match.group(2)}" if match else task.strip()


def _first_line(exc: BaseException) -> str:
    """The first informative line of an exception's text (TensorFlow puts a banner first)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if line.rstrip(":") != "Graph execution error"] or [type(exc).__name__]
    return lines[0][:300]
