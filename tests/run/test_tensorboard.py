"""`run --tensorboard DIR` (issue 29): per-epoch scalars that read back as the run summary's figures,
one event file per result, nothing without the flag, and an unwritable DIR refused before the run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.run.runner import EpochStats
from harness.run.tensorboard import SCALARS, EpochBoard

REPO = Path(__file__).resolve().parents[2]
TWO_EPOCHS = ["--system", "cpu", "--dataset", "synthetic-small", "--seed", "0", "--max-epochs", "2",
              "--target", "1.0"]


def _cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, NCF_CACHE_DIR=str(cwd / "cache"), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(REPO / "run_benchmark.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _scalars(folder: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} of every event file in `folder`, read back with TensorFlow's own reader;
    every value must be a float32 scalar marked for TensorBoard's scalars plugin."""
    import tensorflow as tf

    found: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars", value.tag
                array = tf.make_ndarray(value.tensor)
                assert array.dtype == np.float32 and array.shape == (), value.tag
                found.setdefault(value.tag, {})[event.step] = float(array)
    return found


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """Two 2-epoch runs with --tensorboard, into one submission root."""
    root = tmp_path_factory.mktemp("tensorboard")
    done = _cli([*TWO_EPOCHS, "--runs", "2", "--results-dir", str(root / "root"), "--tensorboard", "tb"], root)
    return done, root


@pytest.mark.slow
def test_every_result_has_one_event_file_whose_scalars_are_the_summary_figures(two_runs):
    done, root = two_runs
    assert done.returncode == 0, done.stderr[-2000:]
    summaries = sorted((root / "root/results/cpu/ncf").glob("result_*.json"))
    assert [p.stem for p in summaries] == ["result_0", "result_1"]
    for path in summaries:
        summary = json.loads(path.read_text())
        board = root / "tb" / "cpu" / path.stem
        assert summary["tensorboard_dir"] == str(board.resolve())
        assert len(list(board.glob("events.out.tfevents.*"))) == 1
        scalars = _scalars(board)
        assert sorted(scalars) == sorted(tag for tag, _ in SCALARS)
        for tag, field in SCALARS:
            written = scalars[tag]
            assert sorted(written) == [1, 2], tag
            for epoch in summary["epochs"]:
                assert written[epoch["epoch"]] == np.float32(epoch[field]), (tag, epoch["epoch"])
    assert sorted(p.name for p in (root / "tb" / "cpu").iterdir()) == ["result_0", "result_1"]


@pytest.mark.slow
def test_without_the_flag_no_event_file_is_written(tmp_path):
    done = _cli([*TWO_EPOCHS, "--max-epochs", "1", "--results-dir", str(tmp_path / "root")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "root/results/cpu/ncf/result_0.json").read_text())
    assert summary["tensorboard_dir"] is None and summary["plan"]["tensorboard_dir"] is None
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_an_unwritable_folder_is_refused_in_one_sentence_before_the_run(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    started = time.time()
    done = _cli([*TWO_EPOCHS, "--results-dir", str(tmp_path / "root"), "--tensorboard",
                 str(tmp_path / "a-file" / "tb")], tmp_path, timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot write to" in errors[0] and "--tensorboard" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "root").exists()          # nothing claimed, no data loaded
    assert time.time() - started < 60


def test_a_board_that_cannot_write_reports_it_instead_of_failing_the_run(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    board = EpochBoard(tmp_path / "a-file" / "result_0")
    board.add(EpochStats(1, 2.0, 1.0, 0.0, 1000, 500.0, 1e6, 0.5, 0.3, 0.7, 0.6))
    problem = board.close()
    assert problem is not None and "incomplete" in problem and "a-file" in problem
