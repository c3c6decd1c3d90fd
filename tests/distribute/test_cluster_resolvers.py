"""Where a multi-host run finds its workers: --cluster auto|slurm|tf-config|flags (issue 29).

Fast, without TensorFlow: which source is used, how a Slurm step's variables become workers,
the one-sentence errors (a missing or inconsistent variable, a task count that is not the
profile's num_hosts), and the `--dry-run` plan under Slurm.
With TensorFlow: the plan's parse agrees with TensorFlow's own SlurmClusterResolver on the same
variables, and the strategy gets the profile's accelerator count, not the resolver's GPU slot.
Slow: two processes on 127.0.0.1, started as a two-task Slurm step would start them, train
together through the real command line and reproduce the one-host epoch loss (the two-host
fixtures and the one-host comparison of test_distributed_multiworker.py, reused).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest
import yaml

import test_distributed_multiworker as multiworker
from harness.core.errors import UserError
from harness.distribute.cluster import (DEFAULT_CLUSTER_PORT, ClusterRequest, WorkerCluster, check_own_port_free,
                                        check_task_count, choose_source,
                                        expand_nodelist, expand_tasks_per_node, read_slurm_step, resolve_cluster)
from harness.run.plan import PlanOverrides, describe_plan
from harness.run.profiles import load_profile
from harness.run.session import check_hardware, resolve

REPO = multiworker.REPO
cluster_dir = multiworker.cluster_dir   # the module-scoped fixture that kills every process it started


def slurm_env(rank: int = 0, tasks: int = 2, nodelist: str = "127.0.0.1", per_node: str = "2") -> dict[str, str]:
    """The step variables srun gives task `rank` (nothing else from Slurm)."""
    return {"SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": str(tasks),
            "SLURM_STEP_NODELIST": nodelist, "SLURM_STEP_TASKS_PER_NODE": per_node}


@pytest.fixture
def clean_env(monkeypatch):
    """No cluster variables from the machine running the tests."""
    for name in [n for n in os.environ if n.startswith("SLURM") or n == "TF_CONFIG"]:
        monkeypatch.delenv(name)
    return monkeypatch


# --------------------------------------------------------------------------------------------
# Which source


TF_CONFIG = json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}})


@pytest.mark.parametrize("asked, flags, env, hosts, expected", [
    ("auto", ["a:1", "b:1"], {"TF_CONFIG": TF_CONFIG, **slurm_env()}, 2, "flags"),
    ("auto", None, {"TF_CONFIG": TF_CONFIG, **slurm_env()}, 2, "tf-config"),
    ("auto", None, slurm_env(), 2, "slurm"),
    ("auto", None, slurm_env(), 1, None),          # a single-host profile under srun stays single-host
    ("auto", None, {}, 2, None),
    ("slurm", None, {"TF_CONFIG": TF_CONFIG, **slurm_env()}, 2, "slurm"),
    ("tf-config", None, {"TF_CONFIG": TF_CONFIG, **slurm_env()}, 2, "tf-config"),
    ("flags", ["a:1", "b:1"], {"TF_CONFIG": TF_CONFIG}, 2, "flags"),
])
def test_the_source_is_the_one_asked_for_or_autos_first_present(asked, flags, env, hosts, expected):
    assert choose_source(asked, flags, 0 if flags else None, hosts, env) == expected


@pytest.mark.parametrize("asked, flags, env, message", [
    ("slurm", None, {}, "--cluster slurm needs a Slurm step (SLURM_PROCID and the SLURM_STEP_* variables srun "
                        "sets), found none."),
    ("tf-config", None, slurm_env(), "--cluster tf-config needs the TF_CONFIG environment variable, found none."),
    ("flags", None, {}, "--cluster flags needs --worker-hosts HOST:PORT,... and --task-index N, found none."),
    ("slurm", ["a:1", "b:1"], slurm_env(), "--cluster slurm takes the workers from a Slurm step"),
])
def test_a_source_that_is_absent_or_contradicted_is_one_sentence(asked, flags, env, message):
    with pytest.raises(UserError) as err:
        choose_source(asked, flags, 0 if flags else None, 2, env)
    assert str(err.value).startswith(message) and not re.search(r"\.\s+[A-Z]", str(err.value))   # one sentence


def test_a_task_index_without_worker_hosts_is_refused():
    with pytest.raises(UserError, match="--task-index needs --worker-hosts"):
        choose_source("auto", None, 1, 2, {})


# --------------------------------------------------------------------------------------------
# Slurm's variables


@pytest.mark.parametrize("text, nodes", [
    ("127.0.0.1", ["127.0.0.1"]),
    ("n[1-2],m5,o[3-4,6,7-9]", ["n1", "n2", "m5", "o3", "o4", "o6", "o7", "o8", "o9"]),
    ("gpu[008-010]", ["gpu008", "gpu009", "gpu010"]),
])
def test_nodelists_expand_like_slurm(text, nodes):
    assert expand_nodelist(text) == nodes


@pytest.mark.parametrize("text", ["rack[1-2]-n[1-4]", "n[1-2]-ib", "a,,b", "n[1-2-3]", "n[x]"])
def test_nodelists_the_resolver_cannot_expand_are_refused(text):
    with pytest.raises(UserError, match="SLURM_STEP_NODELIST"):
        expand_nodelist(text)


def test_tasks_per_node_expand_like_slurm():
    assert expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    with pytest.raises(UserError, match="not a list of N or N\\(xK\\) counts"):
        expand_tasks_per_node("2(3)")


def test_a_step_becomes_one_worker_per_task_nodes_sorted_ports_per_node():
    env = slurm_env(rank=3, tasks=5, nodelist="n[09-10],m1", per_node="2(x2),1")
    cluster = resolve_cluster(ClusterRequest("slurm", 9000), None, None, 5, env)
    assert cluster.workers == ("m1:9000", "n09:9000", "n09:9001", "n10:9000", "n10:9001")
    assert (cluster.source, cluster.task_type, cluster.task_index, cluster.host_index) == ("slurm", "worker", 3, 3)
    assert not cluster.is_chief
    assert resolve_cluster(ClusterRequest("slurm"), None, None, 5, {**env, "SLURM_PROCID": "0"}).is_chief


@pytest.mark.parametrize("change, message", [
    ({"SLURM_STEP_NODELIST": ""}, "A Slurm cluster needs SLURM_STEP_NODELIST, which srun sets for each task"),
    ({"SLURM_STEP_NUM_TASKS": "3"}, "SLURM_STEP_TASKS_PER_NODE places 2 tasks but SLURM_STEP_NUM_TASKS is 3."),
    ({"SLURM_PROCID": "2"}, "SLURM_PROCID 2 is not one of the step's 2 tasks."),
    ({"SLURM_PROCID": "x"}, "SLURM_PROCID must be a whole number, got 'x'."),
    ({"SLURM_STEP_TASKS_PER_NODE": "1,1"}, "SLURM_STEP_NODELIST names 1 node(s) but SLURM_STEP_TASKS_PER_NODE "
                                           "gives task counts for 2."),
    ({"SLURM_STEP_NODELIST": "a,a", "SLURM_STEP_TASKS_PER_NODE": "1,1"}, "SLURM_STEP_NODELIST names node a more "
                                                                         "than once."),
])
def test_inconsistent_slurm_variables_are_one_sentence(change, message):
    with pytest.raises(UserError) as err:
        read_slurm_step({**slurm_env(), **change})
    assert str(err.value).startswith(message)


def test_a_rank_the_resolver_would_place_on_another_node_is_refused():
    # Slurm gives rank 0 to n9 (nodelist order), TensorFlow's resolver sorts n10 first.
    env = {**slurm_env(rank=0, nodelist="n9,n10", per_node="1(x2)"), "SLURMD_NODENAME": "n9"}
    with pytest.raises(UserError, match="Slurm task 0 runs on n9 but SlurmClusterResolver places it at n10:8888"):
        resolve_cluster(ClusterRequest("slurm"), None, None, 2, env)


def test_the_port_must_leave_room_for_every_task_on_a_node():
    with pytest.raises(UserError, match="--cluster-port 65535 leaves no port for the 2 tasks on one node"):
        resolve_cluster(ClusterRequest("slurm", 65535), None, None, 2, slurm_env())
    with pytest.raises(UserError, match="--cluster-port must be between 1 and 65535, got 70000."):
        ClusterRequest("slurm", 70000)


# --------------------------------------------------------------------------------------------
# The task count against the profile's num_hosts


@pytest.mark.parametrize("env, flags, message", [
    (slurm_env(rank=1, tasks=3, per_node="3"), None,
     "System cpu-2host declares 2 hosts but the cluster lists 3 (one worker per Slurm task, SLURM_STEP_NUM_TASKS=3); "
     "start one task per host (srun --ntasks=2 --ntasks-per-node=1) or pick a profile with num_hosts 3."),
    ({"TF_CONFIG": json.dumps({"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"]},
                               "task": {"type": "chief", "index": 0}})}, None,
     "System cpu-2host declares 2 hosts but the cluster lists 3 (in TF_CONFIG, chief + workers); list one worker "
     "per host or pick a profile with num_hosts 3."),
    ({}, ("a:1",), "System cpu-2host declares 2 hosts but the cluster lists 1 (in --worker-hosts); list one worker "
                   "per host or pick a profile with num_hosts 1."),
    ({}, None, "System cpu-2host runs on 2 hosts and needs TF_CONFIG or --worker-hosts and --task-index, or one "
               "Slurm task per host started by srun; found none."),
])
def test_the_hardware_gate_compares_the_task_count_with_num_hosts(clean_env, env, flags, message):
    for name, value in env.items():
        clean_env.setenv(name, value)
    profile, plan = resolve(PlanOverrides(system="cpu-2host", dataset="synthetic-small", seed=0,
                                          worker_hosts=flags, task_index=0 if flags else None))
    with pytest.raises(UserError) as err:
        check_hardware(profile, plan)
    assert str(err.value) == message


def test_a_slurm_step_of_the_right_size_passes_the_gate(clean_env):
    for name, value in slurm_env(rank=1).items():
        clean_env.setenv(name, value)
    profile, plan = resolve(PlanOverrides(system="cpu-2host", dataset="synthetic-small", seed=0))
    check_hardware(profile, plan)
    assert plan.cluster.workers == ("127.0.0.1:8888", "127.0.0.1:8889") and plan.cluster.task_index == 1


@pytest.mark.parametrize("source, flag", [("flags", "--worker-hosts"), ("slurm", "--cluster-port"),
                                          ("tf-config", "TF_CONFIG")])
def test_a_taken_port_of_this_worker_is_one_sentence_before_tensorflow(source, flag):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        mine = WorkerCluster(source, (f"127.0.0.1:{port}", "127.0.0.1:1"), "worker", 0, 0)
        with pytest.raises(UserError) as err:
            check_own_port_free(mine)
        assert str(err.value) == (f"Port {port} of this worker (127.0.0.1:{port}) is already in use on this host: "
                                  f"stop what holds it or choose another port with {flag}.")
        check_own_port_free(WorkerCluster(source, (f"127.0.0.1:{port}", "127.0.0.1:1"), "worker", 1, 1))
    check_own_port_free(mine)   # free again: passes
    check_own_port_free(None)


def test_the_run_command_names_a_taken_port(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([sys.executable, str(REPO / "run_benchmark.py"), "--system", "cpu-2host",
                               "--dataset", "synthetic-small", "--seed", "0", "--worker-hosts",
                               f"127.0.0.1:{port},127.0.0.1:1", "--task-index", "0", "--results-dir", str(tmp_path)],
                              capture_output=True, text=True, cwd=REPO, timeout=120,
                              env={k: v for k, v in os.environ.items() if not k.startswith("SLURM") and k != "TF_CONFIG"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [f"error: Port {port} of this worker (127.0.0.1:{port}) is already in "
                                                "use on this host: stop what holds it or choose another port with "
                                                "--worker-hosts."]


def test_a_single_host_profile_needs_no_cluster():
    check_task_count(None, 1, "System cpu")


# --------------------------------------------------------------------------------------------
# The dry run


CPU_2HOST = ["--system", "cpu-2host", "--dataset", "synthetic-small", "--seed", "0"]


def dry_run(env: dict[str, str], argv: list[str]) -> subprocess.CompletedProcess:
    """`run_benchmark.py ARGV --dry-run` in a fresh interpreter, with -X importtime to see what it imported."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM") and k != "TF_CONFIG"}
    return subprocess.run([sys.executable, "-X", "importtime", str(REPO / "run_benchmark.py"), *argv, "--dry-run"],
                          cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=120)


def plan_row(stdout: str, label: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith(label + " "))
    return " ".join(line[len(label):].split())


def test_the_dry_run_shows_the_slurm_cluster_without_tensorflow():
    done = dry_run(slurm_env(rank=1, nodelist="node[01-02]", per_node="1(x2)"), [*CPU_2HOST, "--cluster-port", "7000"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert plan_row(done.stdout, "cluster") == ("Slurm (SlurmClusterResolver): 2 worker(s) node01:7000, node02:7000; "
                                                "this task is worker 1")
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "harness.distribute.cluster" in imported and "tensorflow" not in imported


def test_the_dry_run_says_when_no_cluster_is_found():
    done = dry_run({}, CPU_2HOST)
    assert done.returncode == 0, done.stderr[-2000:]
    assert plan_row(done.stdout, "cluster").startswith("none found (--cluster auto): pass --worker-hosts")


def test_the_plan_carries_the_request_and_the_cluster(clean_env):
    for name, value in slurm_env().items():
        clean_env.setenv(name, value)
    _, plan = resolve(PlanOverrides(system="cpu-2host", dataset="synthetic-small", seed=0, cluster="slurm",
                                    cluster_port=7100))
    assert plan.cluster_request == ClusterRequest("slurm", 7100)
    assert plan.to_dict()["cluster"]["workers"] == ("127.0.0.1:7100", "127.0.0.1:7101")
    assert ("cluster", "single host") not in describe_plan(plan)


# --------------------------------------------------------------------------------------------
# The examples: their task counts are their profiles' num_hosts, and the TFJob's command finds
# the cluster the training operator describes


def test_the_sbatch_example_starts_one_task_per_host_of_its_profile():
    text = (REPO / "examples/slurm/ncf.sbatch").read_text()
    options = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", text, re.MULTILINE))
    system = re.search(r"^SYSTEM=\$\{SYSTEM:-([\w-]+)\}", text, re.MULTILINE).group(1)
    assert int(options["nodes"]) * int(options["ntasks-per-node"]) == load_profile(system).harness.num_hosts
    commands = re.sub(r"\\\n\s*", " ", text).splitlines()   # continuation lines joined
    runs = [command for command in commands if command.startswith("srun ")]
    assert len(runs) == 2 and all("--cluster slurm" in command for command in runs), runs


def test_the_tfjob_example_runs_its_profile_on_the_operators_tf_config():
    job = yaml.safe_load((REPO / "examples/kubernetes/ncf-tfjob.yaml").read_text())
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    (container,) = worker["template"]["spec"]["containers"]
    argv = [a for a in container["command"][2:] if a != "--quiet"]   # after `python run_benchmark.py`, plan shown
    assert load_profile(argv[argv.index("--system") + 1]).harness.num_hosts == worker["replicas"]
    port = container["ports"][0]["containerPort"]
    hosts = [f"{job['metadata']['name']}-worker-{i}.default.svc:{port}" for i in range(worker["replicas"])]
    tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": 1}}
    done = dry_run({"TF_CONFIG": json.dumps(tf_config)}, argv)
    assert done.returncode == 0, done.stderr[-2000:]
    assert plan_row(done.stdout, "cluster") == (f"TF_CONFIG (TFConfigClusterResolver): 2 worker(s) {hosts[0]}, "
                                                f"{hosts[1]}; this task is worker 1")


# --------------------------------------------------------------------------------------------
# TensorFlow's resolvers


@pytest.mark.parametrize("nodelist, per_node, rank, workers", [
    ("127.0.0.1", "2", 1, ["127.0.0.1:9000", "127.0.0.1:9001"]),
    ("node[01-03]", "1(x3)", 2, ["node01:9000", "node02:9000", "node03:9000"]),
    ("n[09-10],m1", "2(x2),1", 3, ["m1:9000", "n09:9000", "n09:9001", "n10:9000", "n10:9001"]),
])
@pytest.mark.parametrize("device, devices_per_host", [("cpu", 1), ("gpu", 4)])
def test_the_plan_and_slurmclusterresolver_agree(clean_env, nodelist, per_node, rank, workers, device,
                                                 devices_per_host):
    from harness.distribute.strategy import slurm_resolver

    tasks = sum(expand_tasks_per_node(per_node))
    env = slurm_env(rank, tasks, nodelist, per_node)
    for name, value in env.items():
        clean_env.setenv(name, value)
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "")
    cluster = resolve_cluster(ClusterRequest("slurm", 9000), None, None, tasks, env)
    resolver = slurm_resolver(cluster, 9000, devices_per_host if device == "gpu" else 0)
    assert list(cluster.workers) == workers
    assert resolver.cluster_spec().as_dict() == {"worker": workers}
    assert (resolver.task_type, resolver.task_id) == ("worker", rank)
    assert resolver.num_accelerators() == ({"GPU": 4} if device == "gpu" else {})
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""   # auto_set_gpu is off: Slurm binds GPUs


def test_the_plan_and_tfconfigclusterresolver_agree(clean_env):
    import tensorflow as tf

    config = {"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    clean_env.setenv("TF_CONFIG", json.dumps(config))
    cluster = resolve_cluster(ClusterRequest("tf-config"), None, None, 3, os.environ)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    spec = resolver.cluster_spec()
    assert list(cluster.workers) == spec.job_tasks("chief") + spec.job_tasks("worker") == ["c:1", "a:1", "b:1"]
    assert (cluster.task_type, cluster.task_index) == (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert cluster.host_index == 2 and not cluster.is_chief


@pytest.mark.parametrize("text", ["n[1-2],m5,o[3-4,6,7-9]", "gpu[008-010]", "127.0.0.1", "[1-3]"])
def test_nodelists_expand_as_tensorflows_expand_hostlist(text):
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import expand_hostlist

    assert expand_nodelist(text) == expand_hostlist(text)


def test_a_wrong_slurm_task_count_fails_build_strategy_in_one_sentence(clean_env):
    from harness.distribute.strategy import build_strategy

    for name, value in slurm_env(tasks=3, per_node="3").items():
        clean_env.setenv(name, value)
    with pytest.raises(UserError, match=r"The profile declares 2 hosts but the cluster lists 3 \(one worker per "
                                        r"Slurm task, SLURM_STEP_NUM_TASKS=3\)"):
        build_strategy("multi_worker_mirrored", "cpu", 1, 2, cluster=ClusterRequest("slurm"))


def test_the_runner_hands_the_plans_cluster_request_to_the_strategy(clean_env, monkeypatch):
    import harness.distribute.strategy as strategy_module
    from harness.run.runner import BenchmarkSession

    for name, value in slurm_env().items():
        clean_env.setenv(name, value)
    profile, plan = resolve(PlanOverrides(system="cpu-2host", dataset="synthetic-small", seed=0, cluster_port=7200))
    seen = {}
    monkeypatch.setattr(strategy_module, "build_strategy", lambda *args, **kwargs: (seen.update(kwargs), None))
    BenchmarkSession(plan, profile, None).build_strategy()
    assert seen.get("cluster") == ClusterRequest("auto", 7200), \
        "BenchmarkSession.build_strategy must pass cluster=self.plan.cluster_request (else --cluster is ignored)"


# --------------------------------------------------------------------------------------------
# Two Slurm tasks on 127.0.0.1


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1: the two tasks of one node listen on both."""
    for _ in range(50):
        (port,) = multiworker.free_ports(1)
        if port < 65535 and _bindable(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def slurm_step_run(cluster_dir):
    """A one-epoch cpu-2host run as srun --ntasks=2 on one node would start it (task k: SLURM_PROCID=k).

    While it runs, the default port is held, so a run that ignored --cluster-port could not start.
    """
    cluster = cluster_dir("slurm")
    root, port = cluster.workdir / "root", free_port_pair()
    argv = multiworker.cli_argv(root, max_epochs=1)

    def task(_hosts: str, rank: int) -> list[str]:
        step = [f"{k}={v}" for k, v in slurm_env(rank).items()]
        flags = argv("", rank)
        at = flags.index("--worker-hosts")   # drop "--worker-hosts '' --task-index RANK": Slurm says it
        return ["env", "-u", "SLURMD_NODENAME", *step, *flags[:at], *flags[at + 4:],
                "--cluster", "slurm", "--cluster-port", str(port)]

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        try:
            held.bind(("0.0.0.0", DEFAULT_CLUSTER_PORT))
            held.listen()
        except OSError:
            pass   # already taken by something else: a run on it could not start either
        cluster.start(task)
        codes = [cluster.wait(w, multiworker.RUN_TIMEOUT_S) for w in cluster.workers]
    return cluster, root, codes


@pytest.mark.slow
def test_two_slurm_tasks_train_together_as_one_host_does(slurm_step_run, tmp_path):
    cluster, root, codes = slurm_step_run
    for w, code in zip(cluster.workers, codes):
        assert code == 0, f"task {w.index} exited {code}:\n{w.stderr()[-3000:]}"
    assert [p.name for p in multiworker.result_files(root)] == ["result_0.json", "result_0.txt"]
    summary = json.loads((root / "results" / multiworker.SYSTEM / "ncf" / "result_0.json").read_text())
    assert summary["plan"]["cluster"]["source"] == "slurm"
    multiworker.test_two_hosts_train_the_same_model_as_one_host(slurm_step_run, tmp_path)
    (single,) = json.loads((tmp_path / "one" / "results/cpu/ncf/result_0.json").read_text())["epochs"]
    print(f"\nSlurm-style 2 tasks: epoch loss {summary['epochs'][0]['loss']:.9g} hit rate "
          f"{summary['epochs'][0]['hit_rate']:.4f}; one host: {single['loss']:.9g} {single['hit_rate']:.4f}")
