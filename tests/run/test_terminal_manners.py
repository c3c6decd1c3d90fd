"""Terminal manners (issue 25): a closed pipe ends quietly, output to a file is one line per line,
the live bar moves on a terminal, and Ctrl-C during start-up prints one line."""
from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from rich.console import Console

from harness.cli import CLOSED_PIPE_EXIT
from harness.core import tf_runtime
from harness.run.progress import RunDisplay

REPO = Path(__file__).resolve().parents[2]
V05_LOGS = "data/mlperf-v0.5-ncf"


def _command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "run_benchmark.py"), *args]


def _env(root: Path) -> dict[str, str]:
    """A user's environment (TensorFlow's own log level untouched), with the dataset cache in `root`."""
    env = dict(os.environ, NCF_CACHE_DIR=str(root / "cache"))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so Python installs KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- a closed pipe ----------------------------------------------------------------------------
def test_a_reader_that_leaves_after_one_line_ends_the_report_quietly(shared_dir: Path, tmp_path: Path) -> None:
    """`report --json | head -1`: the child must meet the closed pipe, so the pipe holds one page only."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)   # the report's ~50 kB cannot fit before the close
    proc = subprocess.Popen(_command("report", str(shared_dir / V05_LOGS), "--json"), cwd=tmp_path,
                            stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        first = reader.readline()
    stderr = proc.communicate(timeout=120)[1]
    assert first == b"{\n"
    assert stderr == "" and proc.returncode == CLOSED_PIPE_EXIT


@pytest.mark.slow
def test_a_run_whose_reader_leaves_is_an_interrupted_run_and_ends_quietly(tmp_path: Path) -> None:
    """`run ... | head`: the reader leaves once the run has started; the run's next line meets the
    closed pipe inside the timed run, which must end its log aborted (interrupted), keep it as
    `.incomplete`, and exit with the closed-pipe status and nothing on stderr."""
    proc = subprocess.Popen(_command("--system", "cpu", "--dataset", "synthetic-small", "--seed", "0",
                                     "--max-epochs", "3", "--target", "1.0", "--results-dir", str(tmp_path)),
                            cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"run 1/1"):
            break
    proc.stdout.close()
    stderr = proc.communicate(timeout=600)[1].decode()
    assert proc.returncode == CLOSED_PIPE_EXIT and "Traceback" not in stderr, stderr[-2000:]
    folder = tmp_path / "results" / "cpu" / "ncf"
    assert sorted(p.name for p in folder.iterdir()) == ["result_0.json.incomplete", "result_0.txt.incomplete"]
    summary = json.loads((folder / "result_0.json.incomplete").read_text())
    assert (summary["status"], summary["abort_reason"]) == ("aborted", "interrupted"), summary
    assert '"abort_reason": "interrupted"' in (folder / "result_0.txt.incomplete").read_text().splitlines()[-1]


# -- a run's output in a file -----------------------------------------------------------------
@pytest.mark.slow
def test_a_run_written_to_a_file_has_one_line_per_epoch_and_no_control_codes(tmp_path: Path) -> None:
    out = tmp_path / "run.txt"
    with out.open("w") as stdout:
        done = subprocess.run(_command("--system", "cpu", "--dataset", "synthetic-small", "--max-epochs", "2",
                                       "--seed", "0", "--results-dir", str(tmp_path)),
                              cwd=tmp_path, env=_env(tmp_path), stdout=stdout, stderr=subprocess.PIPE,
                              text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "\x1b" not in text and "…" not in text
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2, text
    assert all("ex/s)" in line and line.endswith("pairs/s)") for line in epochs), epochs
    lines = text.splitlines()
    assert any(line.startswith("eval ") and line.endswith("per replica step") for line in lines), text
    plan = lines[:lines.index(next(line for line in lines if line.startswith("results "))) + 1]
    assert plan[0] == "NCF benchmark plan" and all(line == line.rstrip() for line in plan), plan


# -- the live bar on a terminal ---------------------------------------------------------------
def _terminal_display() -> tuple[RunDisplay, io.StringIO]:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, force_interactive=True, width=100, color_system=None)
    return RunDisplay(console=console), screen


def test_the_bar_moves_within_an_epoch_of_several_compiled_calls() -> None:
    display, screen = _terminal_display()
    assert display.live
    for done in (0, 25, 50, 75, 100):
        display.epoch_progress(1, done, 100, 25, 12)
    shown = screen.getvalue()
    assert "epoch 1" in shown and "25/100 steps" in shown and "50/100 steps" in shown


def test_the_bar_counts_epochs_when_one_compiled_call_trains_the_whole_epoch() -> None:
    display, screen = _terminal_display()
    display.epoch_progress(3, 0, 48, 50, 12)     # synthetic-small: 48 steps, 50 per compiled call
    display.epoch_progress(3, 48, 48, 50, 12)
    shown = screen.getvalue()
    assert "2/12 epochs" in shown and "3/12 epochs" in shown
    assert "0/48" not in shown


# -- Ctrl-C during start-up --------------------------------------------------------------------
def _wait_for_tensorflow_chatter(proc: subprocess.Popen, deadline_s: float = 300) -> None:
    """Until TensorFlow has written to the child's captured descriptor 2 (harness.core.tf_runtime):
    the moment a Ctrl-C used to replay that chatter. Linux's /proc shows the capture file."""
    stderr_fd = Path(f"/proc/{proc.pid}/fd/2")
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if not os.readlink(stderr_fd).startswith("pipe:") and stderr_fd.stat().st_size > 0:
                return
        except FileNotFoundError:   # the descriptor is being swapped this instant
            pass
        time.sleep(0.01)
    pytest.fail(f"TensorFlow never wrote to the captured stderr (exit {proc.poll()})")


def test_ctrl_c_while_tensorflow_starts_prints_only_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen(_command("--system", "cpu", "--dataset", "synthetic-small", "--seed", "0",
                                     "--results-dir", str(tmp_path)),
                            cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)
    _wait_for_tensorflow_chatter(proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert stderr == "error: interrupted.\n" and proc.returncode == 130
    assert stdout.startswith("NCF benchmark plan") and "preparing dataset" in stdout, stdout   # nothing lost


class _InterruptedImport:
    """A finder for `tensorflow` that prints start-up chatter on descriptor 2, then fails as `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        from importlib.machinery import ModuleSpec

        return ModuleSpec(name, self)

    def create_module(self, spec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers\n")
        raise self.error


def _start_with(error: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedImport(error), *sys.meta_path])
    tf_runtime.start_tensorflow()


def _native_init_interrupted() -> ImportError:
    """What pybind raises when Ctrl-C lands in a native module's initialisation."""
    try:
        raise ImportError("initialization failed") from KeyboardInterrupt()
    except ImportError as exc:
        return exc


def test_ctrl_c_inside_a_native_module_is_an_interrupt_with_nothing_replayed(monkeypatch, capfd) -> None:
    with pytest.raises(KeyboardInterrupt):
        _start_with(_native_init_interrupted(), monkeypatch)
    assert capfd.readouterr().err == ""


def test_a_real_start_up_failure_still_replays_what_tensorflow_printed(monkeypatch, capfd) -> None:
    with pytest.raises(ImportError, match="libcudart"):
        _start_with(ImportError("libcudart.so.12: cannot open shared object file"), monkeypatch)
    assert "Could not find cuda drivers" in capfd.readouterr().err
