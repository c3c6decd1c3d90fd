"""Build the tf.distribute strategy a system profile declares.

One run loop serves every topology; only this module knows how each strategy is made:
  default                 the default strategy (one device, no distribution overhead)
  one_device              OneDeviceStrategy on the profile's first device
  mirrored                MirroredStrategy over the host's GPUs (or logical CPUs, for tests)
  multi_worker_mirrored   MultiWorkerMirroredStrategy over hosts named by TF_CONFIG or
                          --worker-hosts/--task-index, with a bounded collective timeout so a
                          dead worker makes the others fail instead of hang
  tpu                     TPUStrategy on a slice reached through TPUClusterResolver
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

from harness.errors import UserError

# A collective that waits longer than this fails: the bound on how long surviving workers wait
# for a dead or silent peer (README, "Scale-out").
COLLECTIVE_TIMEOUT_S = 60


@dataclass(frozen=True)
class Topology:
    """Where this process sits in the job: replica and host counts, and whether it is the chief."""

    num_replicas: int
    num_hosts: int
    task_index: int
    is_chief: bool


def tf_config_from_flags(worker_hosts: Sequence[str] | None, task_index: int | None) -> dict | None:
    """TF_CONFIG for --worker-hosts/--task-index, or the environment's TF_CONFIG, or None."""
    if worker_hosts:
        if task_index is None or not 0 <= task_index < len(worker_hosts):
            raise UserError(f"--task-index must be between 0 and {len(worker_hosts) - 1} "
                            f"for {len(worker_hosts)} --worker-hosts.")
        return {"cluster": {"worker": list(worker_hosts)}, "task": {"type": "worker", "index": task_index}}
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        config["cluster"]["worker"]
        config["task"]["index"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"TF_CONFIG is not a valid cluster description ({exc}).") from exc
    return config


def build_strategy(kind: str, device: str, devices_per_host: int, num_hosts: int,
                   tpu_name: str | None = None, worker_hosts: Sequence[str] | None = None,
                   task_index: int | None = None) -> tuple[Any, Topology]:
    """Create the strategy (importing TensorFlow) and describe this process' place in it."""
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
        config = tf_config_from_flags(worker_hosts, task_index)
        if config is None:
            raise UserError("A multi-host profile needs TF_CONFIG or --worker-hosts and --task-index.")
        hosts = len(config["cluster"]["worker"])
        if hosts != num_hosts:
            raise UserError(f"The profile declares {num_hosts} hosts but the cluster lists {hosts}.")
        os.environ["TF_CONFIG"] = json.dumps(config)
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        index = int(config["task"]["index"])
        return strategy, Topology(strategy.num_replicas_in_sync, hosts, index, index == 0)
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
        return strategy, Topology(strategy.num_replicas_in_sync, max(1, num_hosts), 0, True)
    raise UserError(f"Unknown strategy {kind!r}.")
