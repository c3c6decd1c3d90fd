"""The TF Model Garden peer (harness.measure.peer): its venv, its command lines, its results, its data.

Why: `throughput --peer`, `time-to-target` and `calibrate` compare this harness with the peer,
so the peer must be run exactly as stated (flags, seed, XLA, environment), its numbers read from
its own result line, and its failures turned into one sentence. A stand-in for the venv's python
(a script that records how it was called and prints a result line) takes the place of the real
peer here; the launcher's pure-Python helpers run for real. No test asserts a speed.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.core import tf_runtime
from harness.core.errors import UserError
from harness.measure import peer, peer_launcher

THROUGHPUT_RESULT = {"batch_size": 4096, "enable_xla": True, "exp_per_second_excl_first_interval": 150000.0,
                     "avg_exp_per_second_incl_warmup": 90000.0, "interval_exp_per_second": [140000.0, 160000.0],
                     "foreign_cpu_cores_avg": 0.02, "steps_logged": 30}
CURVE_RESULT = {"hr_at_10_per_epoch": [0.2, 0.3], "epoch_seconds": [4.0, 5.0], "train_seconds": [3.0, 4.0],
                "eval_seconds": [1.0, 1.0], "startup_seconds": 2.5, "foreign_cpu_cores_avg": 0.1, "seed": 2}
RATINGS_HEADER = "userId,movieId,rating,timestamp\n"


class FakePeer:
    """Writes a stand-in for the venv's python and reads back how each run called it."""

    def __init__(self, folder: Path) -> None:
        self.python = folder / "python"
        self.calls = folder / "calls.jsonl"

    def answer(self, result: dict | None, exit_code: int = 0) -> None:
        line = "" if result is None else peer_launcher.RESULT_PREFIX + json.dumps(result)
        self.python.write_text(f"""#!{sys.executable}
import json, os, sys
with open({str(self.calls)!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
print("training output line 1")
print("training output line 2")
print({line!r})
sys.exit({exit_code})
""")
        self.python.chmod(0o755)

    def last_call(self) -> tuple[list[str], dict[str, str]]:
        call = json.loads(self.calls.read_text().splitlines()[-1])
        return call["argv"], call["env"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(peer.PEER_DIR_ENV, str(tmp_path / "peer-home"))
    return tmp_path / "peer-home"


@pytest.fixture
def fake(tmp_path, monkeypatch, home) -> FakePeer:
    stand_in = FakePeer(tmp_path)
    monkeypatch.setattr(peer, "ensure_peer_venv", lambda where: stand_in.python if where == home else None)
    return stand_in


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture
def ratings(tmp_path) -> Path:
    path = tmp_path / "data" / "ml-latest-small" / "ratings.csv"
    path.parent.mkdir(parents=True)
    path.write_text(RATINGS_HEADER + "1,10,4.0,100\n")
    return path


def test_the_home_is_the_env_variable_else_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(peer.PEER_DIR_ENV, str(tmp_path / "here"))
    assert peer.peer_home() == tmp_path / "here"
    monkeypatch.delenv(peer.PEER_DIR_ENV)
    monkeypatch.setenv("NCF_CACHE_DIR", str(tmp_path / "cache"))
    assert peer.peer_home() == tmp_path / "cache" / "peer-tfg"


def test_a_throughput_run_with_xla(fake, home, monkeypatch):
    fake.answer(THROUGHPUT_RESULT)
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=1")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    out = peer.run_peer_throughput(4096, True, steps=12, env={"EXTRA": "yes"})
    argv, env = fake.last_call()
    assert argv[0] == peer_launcher.__file__
    assert "--enable_xla" in argv and "--use_synthetic_data" in argv and "--keras_use_ctl" in argv
    assert (flag(argv, "--batch_size"), flag(argv, "--dataset"), flag(argv, "--seed")) == ("4096", "ml-20m", "0")
    assert [flag(argv, name) for name in ("--train_epochs", "--log_steps", "--eval_batch_size")] == ["1", "5", "1000"]
    assert Path(flag(argv, "--data_dir")).parent.parent == home / "runs"
    assert not Path(flag(argv, "--data_dir")).parent.exists()          # a run's folders go with it
    assert env["TF_XLA_FLAGS"] == "--tf_xla_auto_jit=1 --tf_xla_cpu_global_jit"
    assert env[peer_launcher.SYNTH_STEPS_ENV] == "12" and env["EXTRA"] == "yes"
    assert (env["CUDA_VISIBLE_DEVICES"], env["TF_CPP_MIN_LOG_LEVEL"], env["PYTHONUNBUFFERED"]) == ("", "2", "1")
    assert out == peer.PeerThroughput(examples_per_s=150000.0, best_interval=160000.0, foreign_cores=0.02,
                                      batch=4096, xla=True, logged_steps=30, log=out.log)
    assert out.log.parent == home / "logs" and peer_launcher.RESULT_PREFIX in out.log.read_text()


def test_a_throughput_run_without_xla_leaves_the_xla_flags_alone(fake, monkeypatch):
    fake.answer({**THROUGHPUT_RESULT, "exp_per_second_excl_first_interval": None, "interval_exp_per_second": []})
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    out = peer.run_peer_throughput(4096, False)
    argv, env = fake.last_call()
    assert "--enable_xla" not in argv and "TF_XLA_FLAGS" not in env
    assert env[peer_launcher.SYNTH_STEPS_ENV] == "30" and env["TF_CPP_MIN_LOG_LEVEL"] == "0"   # the user's level wins
    assert out.examples_per_s == 90000.0 and out.best_interval is None   # too few intervals: the average with warm-up


def test_the_peer_runs_in_the_users_environment_plus_env(fake, monkeypatch):
    """The allocator setting the harness gives its own TensorFlow reaches the peer only when asked."""
    fake.answer(THROUGHPUT_RESULT)
    monkeypatch.setattr(tf_runtime, "_USER_ENVIRONMENT", {})
    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
    tf_runtime.apply_runtime_environment()
    peer.run_peer_throughput(4096, True)
    assert "TF_CPU_ALLOCATOR_USE_BFC" not in fake.last_call()[1]
    peer.run_peer_throughput(4096, True, env={"TF_CPU_ALLOCATOR_USE_BFC": "7"})
    assert fake.last_call()[1]["TF_CPU_ALLOCATOR_USE_BFC"] == "7"


def test_an_mlsmall_run_passes_the_seed_and_the_ratings(fake, home, ratings):
    fake.answer(CURVE_RESULT)
    curve = peer.run_peer_mlsmall(ratings, 7, seed=2, env={"EXTRA": "yes"})
    argv, env = fake.last_call()
    assert argv[1:argv.index("--data_dir")] == [
        "--keras_use_ctl", "--ml_perf", "--num_factors", "64", "--layers", "256,256,128,64", "--num_gpus", "0",
        "--distribution_strategy", "one_device", "--seed", "2", "--dataset", "ml-latest-small",
        "--nodownload_if_missing", "--batch_size", "2048", "--learning_rate", "0.0005", "--eval_batch_size", "100000",
        "--train_epochs", "7", "--log_steps", "50"]
    assert env[peer_launcher.RAW_DATASET_ENV] == f"ml-latest-small:{ratings}" and env["EXTRA"] == "yes"
    assert curve == peer.PeerCurve(hr_per_epoch=(0.2, 0.3), epoch_seconds=(4.0, 5.0), train_seconds=(3.0, 4.0),
                                   eval_seconds=(1.0, 1.0), startup_s=2.5, foreign_cores=0.1, seed=2, log=curve.log)
    assert peer.read_curve(curve.log) == curve
    first_dirs = (flag(argv, "--data_dir"), flag(argv, "--model_dir"))
    second = peer.run_peer_mlsmall(ratings, 7, seed=2)
    again = fake.last_call()[0]
    assert {flag(again, "--data_dir"), flag(again, "--model_dir")}.isdisjoint(first_dirs)   # never reused
    assert second.log != curve.log


def test_a_failed_run_is_one_sentence_with_its_last_lines(fake, ratings):
    fake.answer(None, exit_code=3)
    with pytest.raises(UserError, match=r"the peer failed \(exit 3, log .*\): .*training output line 1 \| "
                                        r"training output line 2") as failure:
        peer.run_peer_mlsmall(ratings, 2)
    assert "\n" not in str(failure.value)


def test_a_run_without_a_result_line_is_one_sentence(fake):
    fake.answer(None)
    with pytest.raises(UserError, match=r"the peer's log .* holds no TFG_RESULT line: .*training output line 2"):
        peer.run_peer_throughput(4096, False)


def test_missing_ratings_fail_before_the_peer_starts(fake, tmp_path):
    fake.answer(CURVE_RESULT)
    with pytest.raises(UserError, match="the peer's ratings file .* is absent"):
        peer.run_peer_mlsmall(tmp_path / "nowhere.csv", 2)
    assert not fake.calls.exists()


def test_waiting_for_a_quiet_machine(monkeypatch, capsys):
    readings = iter([0.0, 20.0, 20.0, 22.0])        # 2.0 cores busy in the first window, 0.2 in the second
    monkeypatch.setattr(peer, "machine_busy_seconds", lambda: next(readings))
    slept = []
    monkeypatch.setattr(peer.time, "sleep", slept.append)
    peer.wait_until_quiet(60)
    assert slept == [peer.QUIET_WINDOW_S] * 2 and capsys.readouterr().err == ""
    readings = iter([0.0, 20.0, 20.0, 40.0])
    peer.wait_until_quiet(20)                      # busy throughout: gives up after the limit
    assert "still busy (2.00 cores) after 20 s" in capsys.readouterr().err
    peer.wait_until_quiet(0)                       # no wait asked: no reading taken
    assert len(slept) == 4


# ------------------------------------------------------------------------------- the ratings

def test_ratings_from_a_zip_are_extracted_into_the_home(tmp_path, home):
    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "ml-latest-small.zip", "w") as archive:
        archive.writestr("ml-latest-small/ratings.csv", RATINGS_HEADER + "1,10,4.0,100\n")
    path = peer.peer_ratings(str(data), None)
    assert path.parent == home / "ratings" and path.read_text() == RATINGS_HEADER + "1,10,4.0,100\n"
    assert peer.peer_ratings(str(data), None) == path


def test_ratings_from_an_extracted_folder_are_used_in_place(tmp_path, ratings):
    assert peer.peer_ratings(str(tmp_path / "data"), None) == ratings
    assert peer.peer_ratings(str(ratings.parent), None) == ratings      # --data-dir names the folder itself


def test_ratings_from_the_zip_a_run_of_ours_downloaded(tmp_path, home):
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    with zipfile.ZipFile(cache / "downloads" / "ml-latest-small.zip", "w") as archive:
        archive.writestr("ml-latest-small/ratings.csv", RATINGS_HEADER)
    assert peer.peer_ratings(None, str(cache)).read_text() == RATINGS_HEADER


def test_absent_ratings_ask_for_data_dir(tmp_path, home):
    with pytest.raises(UserError, match="pass --data-dir"):
        peer.peer_ratings(None, str(tmp_path / "empty-cache"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds neither ml-latest-small.zip nor an extracted"):
        peer.peer_ratings(str(tmp_path / "empty"), None)


# ---------------------------------------------------------------------------------- the venv

def test_a_working_venv_is_not_reinstalled(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(peer.subprocess, "run",
                        lambda command, **_: calls.append(command) or SimpleNamespace(returncode=0))
    python = peer.ensure_peer_venv(tmp_path)
    assert python == tmp_path / "venv" / "bin" / "python"
    assert calls == [[str(python), "-c", peer.VENV_CHECK]]


def test_a_broken_venv_is_rebuilt_and_a_pip_failure_names_its_log(tmp_path, monkeypatch, capsys):
    calls = []

    def run(command, **_):
        calls.append(command)
        failed = command[1] == "-c" or "--no-deps" in command      # the import check, then the second pip step
        return SimpleNamespace(returncode=1 if failed else 0)

    monkeypatch.setattr(peer.subprocess, "run", run)
    with pytest.raises(UserError, match=f"installing the TF Model Garden peer failed; its output is in "
                                        f"{tmp_path / 'logs' / 'pip.log'}"):
        peer.ensure_peer_venv(tmp_path)
    python = str(tmp_path / "venv" / "bin" / "python")
    assert calls[1:] == [[sys.executable, "-m", "venv", str(tmp_path / "venv")],
                         [python, "-m", "pip", "install", "-q", *peer.PEER_PACKAGES],
                         [python, "-m", "pip", "install", "-q", "--no-deps", "tf-models-official==2.20.0"]]
    assert "installing the TF Model Garden peer" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the launcher

def test_the_launcher_imports_nothing_from_the_harness():
    tree = ast.parse(Path(peer_launcher.__file__).read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert names and not [name for name in names if name.split(".")[0] == "harness"]


def test_importing_the_peer_module_starts_no_tensorflow():
    code = "import sys, harness.measure.peer; print('tensorflow' in sys.modules, 'official' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.split() == ["False", "False"]


def test_users_and_items_after_the_min_ratings_filter(tmp_path):
    rows = [f"1,{item},4.0,{item}" for item in range(20)]           # user 1: 20 ratings, kept
    rows += [f"2,{100 + item},3.0,{item}" for item in range(19)]    # user 2: 19 ratings, dropped with its items
    rows += ["3,5,1.0,1"] * 20                                      # user 3: 20 ratings of one item
    csv = tmp_path / "ratings.csv"
    csv.write_text(RATINGS_HEADER + "\n".join(rows) + "\n")
    assert peer_launcher.users_and_items(str(csv), 20) == (2, 20)


def test_epoch_times_and_rates_from_the_peers_marks():
    times = peer_launcher.epoch_seconds(100.0, train_done=[108.0, 119.0], eval_done=[110.0, 122.0])
    assert times == {"epoch_seconds": [10.0, 12.0], "train_seconds": [8.0, 9.0], "eval_seconds": [2.0, 3.0]}
    marks = [SimpleNamespace(batch_index=i, timestamp=t) for i, t in ((0, 0.0), (5, 10.0), (10, 11.0), (15, 13.0))]
    rates = peer_launcher.training_rates(100, marks)
    assert rates["exp_per_second_excl_first_interval"] == pytest.approx(1000 / 3)   # the first interval left out
    assert rates["interval_exp_per_second"] == [500.0, 250.0]
    assert peer_launcher.training_rates(100, marks[:2])["exp_per_second_excl_first_interval"] is None
