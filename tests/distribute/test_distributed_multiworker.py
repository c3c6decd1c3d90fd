"""Two worker processes on 127.0.0.1 with MultiWorkerMirroredStrategy (issue 4).

Through the real command line (`run_benchmark.py --system cpu-2host --worker-hosts ...`):
  * a short synthetic run: both workers exit 0, and the shared results root holds one log and
    one result (only the chief writes);
  * SIGKILL of the non-chief once training has started: the chief fails within the stated bound
    (harness.distribute.strategy.FAILURE_DETECTION_BOUND_S) with a one-line error and a non-zero exit, and
    no result is counted;
  * SIGKILL of the chief: the other worker fails within the bound, and no complete result exists.
Through the strategy alone (tests/support/distributed_worker_probe.py), the two other ways a peer is lost:
a frozen worker (SIGSTOP: heartbeats stop) and a live worker that never reaches the collective
(the collective timeout, shortened for the test).

Every subprocess has a hard deadline, and any process still alive when a test ends is killed
(by its own pid), so a hang fails the test instead of blocking the suite. The measured detection
times are printed (`pytest -s`) and recorded as test properties.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.distribute.strategy import (COLLECTIVE_TIMEOUT_S, FAILURE_DETECTION_BOUND_S, HEARTBEAT_TIMEOUT_S,
                                         describe_distributed_failure, tf_config_from_flags)
from support.events import read_events

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "tests" / "support" / "distributed_worker_probe.py"
SYSTEM = "cpu-2host"
# Hard cap for two workers to import TensorFlow, prepare synthetic-small, join and finish a
# one-epoch run on 2 shared cores (it takes ~30 s when the machine is quiet).
RUN_TIMEOUT_S = 300
# After a peer is lost: detection (the bound) plus closing the log, the summary and the process.
EXIT_SLACK_S = 45
SURVIVOR_TIMEOUT_S = FAILURE_DETECTION_BOUND_S + EXIT_SLACK_S


def free_ports(n: int) -> list[int]:
    """n distinct free ephemeral ports on 127.0.0.1 (all held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    out: Path
    err: Path
    ended_at: float | None = None

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr().splitlines() if line.startswith("error:")]


@dataclass
class Cluster:
    """Two processes of one job; every process it started is killed (by pid) when it closes."""

    workdir: Path
    workers: list[Worker] = field(default_factory=list)

    def start(self, argv_for_task) -> None:
        hosts = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
               "NCF_CACHE_DIR": str(self.workdir.parent / "cache")}
        env.pop("TF_CONFIG", None)
        for i in range(2):
            out, err = self.workdir / f"task{i}.out", self.workdir / f"task{i}.err"
            proc = subprocess.Popen(argv_for_task(hosts, i), cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out.open("w"), stderr=err.open("w"), start_new_session=True)
            self.workers.append(Worker(i, proc, out, err))

    def wait_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            ended = [w for w in self.workers if w.proc.poll() is not None]
            if ended:
                w = ended[0]
                pytest.fail(f"task {w.index} exited ({w.proc.returncode}) before {what}:\n{w.stderr()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout} s")
            time.sleep(0.1)

    def wait(self, worker: Worker, timeout: float) -> int | None:
        """The exit code, or None (after killing it) when it outlived `timeout`."""
        try:
            code = worker.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()
            return None
        worker.ended_at = time.monotonic()
        return code

    def close(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                try:
                    os.kill(w.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                w.proc.kill()
                w.proc.wait()


def cli_argv(root: Path, max_epochs: int):
    def argv(hosts: str, task: int) -> list[str]:
        return [sys.executable, str(REPO / "run_benchmark.py"), "--system", SYSTEM, "--dataset", "synthetic-small",
                "--seed", "0", "--max-epochs", str(max_epochs), "--worker-hosts", hosts, "--task-index", str(task),
                "--results-dir", str(root), "--quiet"]
    return argv


def result_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "results").rglob("*") if p.is_file()) if (root / "results").exists() else []


def training_started(root: Path) -> bool:
    logs = list((root / "results").glob(f"{SYSTEM}/ncf/result_*.txt")) if (root / "results").exists() else []
    return any("epoch_start" in p.read_text() for p in logs)


@pytest.fixture(scope="module")
def cluster_dir(tmp_path_factory):
    made = []

    def make(name: str) -> Cluster:
        cluster = Cluster(tmp_path_factory.mktemp(name))
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()


# --------------------------------------------------------------------------------------------
# A complete two-worker run through the command line


@pytest.fixture(scope="module")
def two_worker_run(cluster_dir):
    cluster = cluster_dir("run")
    root = cluster.workdir / "root"
    cluster.start(cli_argv(root, max_epochs=1))
    codes = [cluster.wait(w, RUN_TIMEOUT_S) for w in cluster.workers]
    return cluster, root, codes


@pytest.mark.slow
def test_two_workers_finish_and_both_exit_zero(two_worker_run):
    cluster, _, codes = two_worker_run
    for w, code in zip(cluster.workers, codes):
        assert code == 0, f"task {w.index} exited {code}:\n{w.stderr()[-3000:]}"


@pytest.mark.slow
def test_only_the_chief_writes_one_log_and_one_result(two_worker_run):
    _, root, codes = two_worker_run
    assert codes == [0, 0]
    files = result_files(root)
    assert [p.name for p in files] == ["result_0.json", "result_0.txt"], files
    summary = json.loads((root / "results" / SYSTEM / "ncf" / "result_0.json").read_text())
    assert summary["complete"] is True
    assert summary["status"] == "aborted" and summary["abort_reason"] == "max_epochs"
    assert summary["epochs_run"] == 1
    assert (root / "systems" / f"{SYSTEM}.json").is_file()


@pytest.mark.slow
def test_the_log_records_two_replicas_on_two_hosts(two_worker_run):
    _, root, _ = two_worker_run
    events = read_events(root / "results" / SYSTEM / "ncf" / "result_0.txt")
    values = {e["key"]: e["value"] for e in events}
    assert values["num_replicas"] == 2 and values["num_hosts"] == 2
    assert events[-1]["key"] == "run_stop"
    assert events[-1]["metadata"]["status"] == "aborted"
    assert [e["metadata"]["epoch_num"] for e in events if e["key"] == "eval_accuracy"] == [1]


@pytest.mark.slow
def test_two_hosts_train_the_same_model_as_one_host(two_worker_run, tmp_path):
    _, root, codes = two_worker_run
    assert codes == [0, 0]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "NCF_CACHE_DIR": str(two_worker_run[0].workdir.parent / "cache")}
    one = tmp_path / "one"
    done = subprocess.run([sys.executable, str(REPO / "run_benchmark.py"), "--system", "cpu", "--dataset",
                           "synthetic-small", "--seed", "0", "--max-epochs", "1", "--results-dir", str(one), "--quiet"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    (single,) = json.loads((one / "results/cpu/ncf/result_0.json").read_text())["epochs"]
    (double,) = json.loads((root / "results" / SYSTEM / "ncf/result_0.json").read_text())["epochs"]
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert double["hit_rate"] == pytest.approx(single["hit_rate"], abs=2e-3)   # 2 of 1,000 users


# --------------------------------------------------------------------------------------------
# A worker killed during training


def kill_after_training_starts(cluster_dir, name: str, victim: int):
    """Start a 5-epoch run, SIGKILL task `victim` at the first epoch_start, time the survivor."""
    cluster = cluster_dir(name)
    root = cluster.workdir / "root"
    cluster.start(cli_argv(root, max_epochs=5))
    cluster.wait_until(lambda: training_started(root), RUN_TIMEOUT_S, "epoch_start in the chief's log")
    os.kill(cluster.workers[victim].proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    survivor = cluster.workers[1 - victim]
    code = cluster.wait(survivor, SURVIVOR_TIMEOUT_S)
    cluster.wait(cluster.workers[victim], 30)
    detected = None if code is None else survivor.ended_at - killed
    print(f"\n{name}: task {1 - victim} exited {code} {detected if detected is None else round(detected, 1)} s "
          f"after task {victim} was killed (bound {FAILURE_DETECTION_BOUND_S} s + exit)")
    return cluster, root, survivor, code, detected


@pytest.fixture(scope="module")
def killed_worker(cluster_dir):
    return kill_after_training_starts(cluster_dir, "killed_worker", victim=1)


def assert_survivor_failed_within_bound(killed, record_property, what: str) -> None:
    """The survivor exited (no hang), non-zero, with one `error:` line, last, of one line."""
    _, _, survivor, code, detected = killed
    assert code is not None, f"task {survivor.index} was still running {SURVIVOR_TIMEOUT_S} s after {what} (hang)"
    record_property(f"task{survivor.index}_exit_after_kill_s", round(detected, 2))
    assert code != 0
    errors = survivor.error_lines()
    assert len(errors) == 1, survivor.stderr()[-3000:]
    assert survivor.stderr().rstrip().splitlines()[-1] == errors[0], "the error must be the last line"
    assert len(errors[0]) < 400


@pytest.mark.slow
def test_killing_a_worker_fails_the_chief_within_the_bound(killed_worker, record_property):
    assert_survivor_failed_within_bound(killed_worker, record_property, "its peer was killed")


@pytest.mark.slow
def test_killing_a_worker_counts_no_result(killed_worker):
    from harness.results.tree import ResultsTree

    _, root, _, _, _ = killed_worker
    files = result_files(root)
    assert not [p for p in files if p.suffix in (".txt", ".json")], f"a result was counted: {files}"
    listed = ResultsTree(str(root)).results(SYSTEM)
    assert listed and all(not r.complete for r in listed), listed


@pytest.mark.slow
def test_killing_a_worker_ends_the_chiefs_log_with_run_stop_aborted(killed_worker):
    _, root, _, _, _ = killed_worker
    logs = sorted((root / "results" / SYSTEM / "ncf").glob("result_*.txt*"))
    assert len(logs) == 1, logs
    last = read_events(logs[0])[-1]
    assert last["key"] == "run_stop", last
    assert last["metadata"]["status"] == "aborted" and last["metadata"]["abort_reason"] == "error"


@pytest.mark.slow
def test_killing_a_worker_names_the_lost_peer(killed_worker):
    _, _, chief, _, _ = killed_worker
    (error,) = chief.error_lines()
    assert "Graph execution error" not in error
    assert "lost a peer" in error, error


@pytest.fixture(scope="module")
def killed_chief(cluster_dir):
    return kill_after_training_starts(cluster_dir, "killed_chief", victim=0)


@pytest.mark.slow
def test_killing_the_chief_fails_the_worker_within_the_bound(killed_chief, record_property):
    assert_survivor_failed_within_bound(killed_chief, record_property, "the chief was killed")


@pytest.mark.slow
def test_killing_the_chief_leaves_no_complete_result(killed_chief):
    from harness.results.log_parser import parse_log
    from harness.results.run_record import run_record

    _, root, _, _, _ = killed_chief
    files = result_files(root)
    assert not [p for p in files if p.name.endswith(".json")], f"a summary was written: {files}"
    for log in [p for p in files if p.name.endswith(".txt")]:
        assert run_record(parse_log(log), SYSTEM).status != "success"
        assert "run_stop" not in log.read_text()


# --------------------------------------------------------------------------------------------
# Peers lost without dying: the strategy's own bounds


def probe_pair(cluster_dir, name: str, victim_flags: list[str], common: list[str]) -> Cluster:
    cluster = cluster_dir(name)

    def argv(hosts: str, task: int) -> list[str]:
        return [sys.executable, str(PROBE), hosts, str(task), *common, *(victim_flags if task == 1 else [])]

    cluster.start(argv)
    cluster.wait_until(lambda: "step 3 " in cluster.workers[0].stdout(), RUN_TIMEOUT_S, "step 3 on the chief")
    return cluster


def failure_report(worker: Worker) -> tuple[float, str]:
    line = next((l for l in worker.stdout().splitlines() if l.startswith("failed ")), None)
    assert line is not None, f"task {worker.index} reported no failure:\n{worker.stdout()[-2000:]}\n{worker.stderr()[-2000:]}"
    _, waited, reason = line.split(" ", 2)
    return float(waited), reason


@pytest.mark.slow
def test_a_frozen_worker_is_detected_by_heartbeats(cluster_dir, record_property):
    cluster = probe_pair(cluster_dir, "frozen", [], [])
    os.kill(cluster.workers[1].proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    chief = cluster.workers[0]
    code = cluster.wait(chief, SURVIVOR_TIMEOUT_S)
    assert code is not None, f"the chief still waited {SURVIVOR_TIMEOUT_S} s after its peer froze (hang)"
    assert code == 3
    waited, reason = failure_report(chief)
    detected = chief.ended_at - stopped
    record_property("chief_exit_after_peer_froze_s", round(detected, 2))
    print(f"\nfrozen worker: the chief exited {detected:.1f} s after SIGSTOP (its step waited {waited:.1f} s): {reason}")
    assert "worker 1 stopped sending heartbeats" in reason, reason
    assert waited <= FAILURE_DETECTION_BOUND_S


@pytest.mark.slow
def test_a_live_worker_that_never_reaches_the_collective_hits_the_timeout(cluster_dir, record_property):
    timeout = 5   # a shortened COLLECTIVE_TIMEOUT_S, so the test does not wait a minute
    stall = 60    # task 1 sleeps this long (alive, heartbeating) before its step 6
    cluster = probe_pair(cluster_dir, "stalled", ["--stall-at", "6", "--stall-s", str(stall)],
                         ["--collective-timeout", str(timeout)])
    code = cluster.wait(cluster.workers[0], timeout + EXIT_SLACK_S + 30)
    assert code == 3, f"the chief did not fail while its peer stalled {stall} s (exit {code})"
    waited, reason = failure_report(cluster.workers[0])
    record_property("chief_wait_for_stalled_peer_s", waited)
    print(f"\nstalled worker: the chief's step failed after {waited:.1f} s: {reason}")
    assert f"waited more than {timeout} s" in reason, reason
    assert timeout <= waited < stall


# --------------------------------------------------------------------------------------------
# Pieces that need no cluster


def _tf_error(name: str, text: str) -> Exception:
    return type(name, (Exception,), {})(text)


@pytest.mark.parametrize("name, text, expected", [
    ("UnavailableError", "Graph execution error:\n\nDetected at node ...\nThe following tasks are unhealthy "
     "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.",
     f"worker 1 stopped sending heartbeats for {HEARTBEAT_TIMEOUT_S} s"),
    ("DeadlineExceededError", "Graph execution error:\n...Collective has timed out during execution.",
     f"waited more than {COLLECTIVE_TIMEOUT_S} s"),
    ("UnavailableError", "Graph execution error:\nfailed to connect to all addresses; last error: UNKNOWN: "
     "ipv4:127.0.0.1:4: Failed to connect to remote host: Connection refused", "unreachable"),
    ("DeadlineExceededError", "Graph execution error:\nDeadline Exceeded\n\nRPC: /tensorflow.CoordinationService/Heartbeat",
     "the chief (coordination service) stopped answering"),
])
def test_peer_failures_become_one_line(name, text, expected):
    line = describe_distributed_failure(_tf_error(name, text))
    assert line is not None and expected in line and "\n" not in line
    assert name in line and "Graph execution error" not in line


def test_other_errors_are_not_called_peer_failures():
    assert describe_distributed_failure(ValueError("Connection refused")) is None
    assert describe_distributed_failure(_tf_error("InternalError", "out of memory")) is None
    unknown = describe_distributed_failure(_tf_error("UnavailableError", "Graph execution error:\nsomething new"))
    assert unknown is not None and "something new" in unknown


def test_the_stated_bound_covers_every_detection_path():
    assert FAILURE_DETECTION_BOUND_S >= COLLECTIVE_TIMEOUT_S
    assert FAILURE_DETECTION_BOUND_S >= 2 * HEARTBEAT_TIMEOUT_S


def test_worker_flags_become_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = tf_config_from_flags(["127.0.0.1:1", "127.0.0.1:2"], 1)
    assert config == {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    assert tf_config_from_flags(None, None) is None
    with pytest.raises(UserError, match="--task-index must be between 0 and 1"):
        tf_config_from_flags(["127.0.0.1:1", "127.0.0.1:2"], 2)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG is not a valid cluster description"):
        tf_config_from_flags(None, None)


def test_a_cluster_of_the_wrong_size_is_a_user_error(monkeypatch):
    from harness.distribute.strategy import build_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    hosts = [f"127.0.0.1:{p}" for p in free_ports(3)]
    with pytest.raises(UserError, match="declares 2 hosts but the cluster lists 3"):
        build_strategy("multi_worker_mirrored", "cpu", 1, 2, worker_hosts=hosts, task_index=0)
    with pytest.raises(UserError, match="needs TF_CONFIG or --worker-hosts"):
        build_strategy("multi_worker_mirrored", "cpu", 1, 2)
