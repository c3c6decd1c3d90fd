"""Where the workers of a multi-host run come from: flags, TF_CONFIG or a Slurm step. No TensorFlow.

Why read the environment here and not only through TensorFlow's resolvers: `--dry-run` shows the
cluster and the hardware gate checks its size before TensorFlow is imported (seconds, and a process
that cannot then be configured). `harness.distribute.strategy` builds the real cluster with
TensorFlow's own resolvers (TFConfigClusterResolver, SlurmClusterResolver) and fails if they found
other workers than this module did, so the plan and the strategy cannot silently disagree.

Sources (`--cluster`, default auto):
  flags      --worker-hosts HOST:PORT,... and --task-index N
  tf-config  the TF_CONFIG environment variable (written by a Kubernetes TFJob, or by hand)
  slurm      the variables srun sets for each task of a step: SLURM_PROCID, SLURM_STEP_NUM_TASKS,
             SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE; one worker per Slurm task
  auto       the flags if given, else TF_CONFIG if set, else Slurm when SLURM_PROCID is set and the
             profile has num_hosts > 1 (a single-host profile started under srun stays single-host)

Slurm, laid out as TensorFlow's SlurmClusterResolver (TF 2.21) does it, which this module mirrors:
nodes are sorted by name, the k-th task on a node listens on --cluster-port + k (default 8888, the
resolver's own default), and Slurm task r is worker r (worker 0 is the chief). The resolver expands
nodelists itself, without scontrol, and knows only `name` and `prefix[1-3,07]` parts; a nodelist
beyond that (`rack[1-2]-n[1-4]`) is refused here with one sentence rather than by TensorFlow later.
Because nodes are sorted by name while Slurm hands out ranks in nodelist order, a nodelist whose
order is not the sorted one (n9,n10) or a cyclic task distribution would place a rank on another
node's address; when Slurm names this task's node (SLURMD_NODENAME) that is checked.
"""
from __future__ import annotations

import errno
import json
import os
import re
import socket
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.core.errors import UserError

CLUSTER_SOURCES = ("auto", "slurm", "tf-config", "flags")
# SlurmClusterResolver's own default port_base; the k-th task on a node uses DEFAULT_CLUSTER_PORT + k.
DEFAULT_CLUSTER_PORT = 8888
SLURM_STEP_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")

_NEEDS = {"flags": "--worker-hosts HOST:PORT,... and --task-index N",
          "tf-config": "the TF_CONFIG environment variable",
          "slurm": "a Slurm step (SLURM_PROCID and the SLURM_STEP_* variables srun sets)"}
_COUNTED = {"flags": "in --worker-hosts", "tf-config": "in TF_CONFIG, chief + workers",
            "slurm": "one worker per Slurm task, SLURM_STEP_NUM_TASKS={n}"}
_PORT_SET_BY = {"flags": "--worker-hosts", "tf-config": "TF_CONFIG", "slurm": "--cluster-port"}
_SHOWN = {"flags": "--worker-hosts (TFConfigClusterResolver)", "tf-config": "TF_CONFIG (TFConfigClusterResolver)",
          "slurm": "Slurm (SlurmClusterResolver)"}


@dataclass(frozen=True)
class ClusterRequest:
    """What the command line asked for: a source (or auto) and the first port of Slurm workers."""

    source: str = "auto"
    port: int = DEFAULT_CLUSTER_PORT

    def __post_init__(self) -> None:
        if self.source not in CLUSTER_SOURCES:
            raise UserError(f"--cluster must be one of {', '.join(CLUSTER_SOURCES)}, got {self.source!r}.")
        if not 1 <= self.port <= 65535:
            raise UserError(f"--cluster-port must be between 1 and 65535, got {self.port}.")


@dataclass(frozen=True)
class SlurmStep:
    """One Slurm step as srun describes it to each of its tasks."""

    rank: int
    num_tasks: int
    nodes: tuple[tuple[str, int], ...]   # (node, tasks on it), in nodelist order

    @property
    def max_tasks_per_node(self) -> int:
        return max(tasks for _, tasks in self.nodes)


@dataclass(frozen=True)
class WorkerCluster:
    """The workers of a multi-host run and this process' place among them."""

    source: str                 # flags, tf-config or slurm
    workers: tuple[str, ...]    # every task's HOST:PORT, chief first
    task_type: str              # "worker" or "chief", as TensorFlow names this task
    task_index: int             # index within task_type (TensorFlow's task_id)
    host_index: int             # position in `workers`: the shard of the data this host trains on

    @property
    def is_chief(self) -> bool:
        return self.host_index == 0


def tf_config_from_flags(worker_hosts: Sequence[str] | None, task_index: int | None,
                         env: Mapping[str, str] = os.environ) -> dict | None:
    """TF_CONFIG for --worker-hosts/--task-index, or the environment's TF_CONFIG, or None."""
    if worker_hosts:
        if task_index is None or not 0 <= task_index < len(worker_hosts):
            raise UserError(f"--task-index must be between 0 and {len(worker_hosts) - 1} "
                            f"for {len(worker_hosts)} --worker-hosts.")
        return {"cluster": {"worker": list(worker_hosts)}, "task": {"type": "worker", "index": task_index}}
    raw = env.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        config["cluster"]["worker"]
        config["task"]["index"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"TF_CONFIG is not a valid cluster description ({exc}).") from exc
    return config


def choose_source(asked: str, worker_hosts: Sequence[str] | None, task_index: int | None,
                  num_hosts: int, env: Mapping[str, str]) -> str | None:
    """The source `asked` (checked to be present), or auto's pick; None when there is no cluster."""
    if task_index is not None and not worker_hosts:
        raise UserError("--task-index needs --worker-hosts (the comma-separated HOST:PORT list).")
    if asked == "auto":
        if worker_hosts:
            return "flags"
        if env.get("TF_CONFIG"):
            return "tf-config"
        return "slurm" if "SLURM_PROCID" in env and num_hosts > 1 else None
    if worker_hosts and asked != "flags":
        raise UserError(f"--cluster {asked} takes the workers from {_NEEDS[asked]}, so --worker-hosts "
                        "cannot be given as well.")
    present = {"flags": bool(worker_hosts), "tf-config": bool(env.get("TF_CONFIG")), "slurm": "SLURM_PROCID" in env}
    if not present[asked]:
        raise UserError(f"--cluster {asked} needs {_NEEDS[asked]}, found none.")
    return asked


def resolve_cluster(request: ClusterRequest, worker_hosts: Sequence[str] | None, task_index: int | None,
                    num_hosts: int, env: Mapping[str, str]) -> WorkerCluster | None:
    """The cluster the request and the environment describe, or None for a single-host run."""
    source = choose_source(request.source, worker_hosts, task_index, num_hosts, env)
    if source is None:
        return None
    if source == "slurm":
        return slurm_cluster(read_slurm_step(env), request.port, env.get("SLURMD_NODENAME"))
    config = tf_config_from_flags(worker_hosts if source == "flags" else None, task_index, env)
    assert config is not None  # choose_source found the flags or TF_CONFIG
    return cluster_from_tf_config(config, source)


def cluster_from_tf_config(config: dict, source: str) -> WorkerCluster:
    """A TF_CONFIG dict as a WorkerCluster (chief first: the chief trains shard 0)."""
    cluster, task = config["cluster"], config["task"]
    chiefs = list(cluster.get("chief", []))
    task_type, index = task.get("type", "worker"), task["index"]
    host_index = int(index) + (len(chiefs) if task_type == "worker" else 0)
    return WorkerCluster(source, tuple(chiefs + list(cluster["worker"])), task_type, index, host_index)


# --------------------------------------------------------------------------------------------
# Slurm


def read_slurm_step(env: Mapping[str, str]) -> SlurmStep:
    """The step srun started this task in; one sentence when a variable is missing or inconsistent."""
    missing = [name for name in SLURM_STEP_VARIABLES if not env.get(name)]
    if missing:
        raise UserError(f"A Slurm cluster needs {', '.join(missing)}, which srun sets for each task: start "
                        "one benchmark task per host with srun inside the allocation, not from the batch "
                        "script itself.")
    rank, num_tasks = _slurm_int(env, "SLURM_PROCID"), _slurm_int(env, "SLURM_STEP_NUM_TASKS")
    nodes = expand_nodelist(env["SLURM_STEP_NODELIST"])
    tasks = expand_tasks_per_node(env["SLURM_STEP_TASKS_PER_NODE"])
    if len(nodes) != len(tasks):
        raise UserError(f"SLURM_STEP_NODELIST names {len(nodes)} node(s) but SLURM_STEP_TASKS_PER_NODE "
                        f"gives task counts for {len(tasks)}.")
    twice = sorted({node for node in nodes if nodes.count(node) > 1})
    if twice:
        raise UserError(f"SLURM_STEP_NODELIST names node {twice[0]} more than once.")
    if sum(tasks) != num_tasks:
        raise UserError(f"SLURM_STEP_TASKS_PER_NODE places {sum(tasks)} tasks but SLURM_STEP_NUM_TASKS "
                        f"is {num_tasks}.")
    if not 0 <= rank < num_tasks:
        raise UserError(f"SLURM_PROCID {rank} is not one of the step's {num_tasks} tasks.")
    return SlurmStep(rank, num_tasks, tuple(zip(nodes, tasks)))


def slurm_cluster(step: SlurmStep, port: int, node_name: str | None = None) -> WorkerCluster:
    """The workers SlurmClusterResolver makes of `step`: nodes sorted by name, port + k for a node's k-th task."""
    if port + step.max_tasks_per_node - 1 > 65535:
        raise UserError(f"--cluster-port {port} leaves no port for the {step.max_tasks_per_node} tasks "
                        "on one node (the k-th uses port + k, at most 65535).")
    workers = tuple(f"{node}:{port + k}" for node, tasks in sorted(step.nodes) for k in range(tasks))
    placed = workers[step.rank].rpartition(":")[0]
    if node_name and node_name != placed:
        raise UserError(f"Slurm task {step.rank} runs on {node_name} but SlurmClusterResolver places it at "
                        f"{workers[step.rank]} (it sorts nodes by name and numbers tasks in that order); "
                        "use --distribution=block with nodes whose names sort in nodelist order, or "
                        "--cluster flags.")
    return WorkerCluster("slurm", workers, "worker", step.rank, step.rank)


_NODE = re.compile(r"([^,\[\]]*)(?:\[([0-9,\-]+)\])?")


def expand_nodelist(text: str) -> list[str]:
    """'n[01-02],m5' -> ['n01', 'n02', 'm5'], the forms SlurmClusterResolver's expand_hostlist knows."""
    nodes: list[str] = []
    for part in re.split(r",(?![^\[]*\])", text.strip()):
        match = _NODE.fullmatch(part)
        if not part or match is None:
            raise UserError(f"SLURM_STEP_NODELIST {text!r} is not a list of names and prefix[1-3,5] ranges, "
                            "the forms TensorFlow's SlurmClusterResolver can expand.")
        prefix, ranges = match.groups()
        nodes.extend([prefix] if ranges is None else [prefix + n for n in _expand_ranges(ranges, text)])
    return nodes


def _expand_ranges(ranges: str, text: str) -> list[str]:
    """'01-03,7' -> ['01', '02', '03', '7']: zero-padded to the width of each range's start."""
    out = []
    for item in ranges.split(","):
        first, _, last = item.partition("-")
        if not first.isdigit() or not (last or first).isdigit():
            raise UserError(f"SLURM_STEP_NODELIST {text!r} has a range that is not N or N-M: {item!r}.")
        out.extend(str(i).zfill(len(first)) for i in range(int(first), int(last or first) + 1))
    return out


def expand_tasks_per_node(text: str) -> list[int]:
    """'2(x3),1' -> [2, 2, 2, 1] (Slurm's compressed SLURM_STEP_TASKS_PER_NODE)."""
    counts: list[int] = []
    for part in text.strip().split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part)
        if match is None:
            raise UserError(f"SLURM_STEP_TASKS_PER_NODE {text!r} is not a list of N or N(xK) counts.")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def _slurm_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise UserError(f"{name} must be a whole number, got {env[name]!r}.") from None


# --------------------------------------------------------------------------------------------
# The plan's view: the size check and the dry-run row


def check_task_count(cluster: WorkerCluster | None, num_hosts: int, who: str) -> None:
    """One sentence unless the cluster has exactly one task per host the profile declares."""
    if cluster is None:
        if num_hosts > 1:
            raise UserError(f"{who} runs on {num_hosts} hosts and needs TF_CONFIG or --worker-hosts and "
                            "--task-index, or one Slurm task per host started by srun; found none.")
        return
    found = len(cluster.workers)
    if found != num_hosts:
        hint = (f"start one task per host (srun --ntasks={num_hosts} --ntasks-per-node=1)"
                if cluster.source == "slurm" else "list one worker per host")
        raise UserError(f"{who} declares {num_hosts} host{'s' if num_hosts != 1 else ''} but the cluster "
                        f"lists {found} ({_COUNTED[cluster.source].format(n=found)}); {hint} or pick a profile "
                        f"with num_hosts {found}.")


def check_own_port_free(cluster: WorkerCluster | None) -> None:
    """One sentence when the port this task's server will listen on is already taken on this host.

    Why: TensorFlow's gRPC server meets a taken port deep inside the strategy's construction, as
    `UnknownError: Could not start gRPC server`, after TensorFlow has started. A bind probe (with
    SO_REUSEADDR, so a previous run's TIME_WAIT sockets do not count, only a listener does) names
    the port and what sets it first. The probe is closed before TensorFlow binds; a port taken in
    between still fails TensorFlow's way.
    """
    if cluster is None:
        return
    address = cluster.workers[cluster.host_index]
    port = int(address.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise UserError(f"This worker cannot listen on port {port} ({address}): {exc.strerror}; "
                                f"choose another port with {_PORT_SET_BY[cluster.source]}.") from exc
            raise UserError(f"Port {port} of this worker ({address}) is already in use on this host: stop "
                            f"what holds it or choose another port with {_PORT_SET_BY[cluster.source]}.") from exc


def describe_cluster(cluster: WorkerCluster | None, request: ClusterRequest, num_hosts: int) -> str:
    """The plan row: the source used, the workers and this task's place."""
    if cluster is None:
        if num_hosts == 1:
            return "single host"
        return (f"none found (--cluster {request.source}): pass --worker-hosts and --task-index, set "
                "TF_CONFIG, or start one task per host with srun")
    shown = ", ".join(cluster.workers[:4]) + (f", ... ({len(cluster.workers)})" if len(cluster.workers) > 4 else "")
    return (f"{_SHOWN[cluster.source]}: {len(cluster.workers)} worker(s) {shown}; this task is "
            f"{cluster.task_type} {cluster.task_index}" + (" (chief)" if cluster.is_chief else ""))
