"""Every unwritable path is one sentence, found before the work, and nothing written earlier is lost
(issue 25).

Each case runs the real command in a child that mode bits bind (support.unprivileged: as root,
without CAP_DAC_OVERRIDE) against a chmod 0555 folder, and checks: exit 2, exactly one `error:`
line naming the folder and the flag to change, no traceback, no run started, earlier files intact.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.logbuilder import LogBuilder
from support.paths import REPO
from support.unprivileged import read_only, unprivileged

QUICK = ["--system", "cpu", "--dataset", "synthetic-small", "--max-epochs", "1", "--seed", "0"]


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`run_benchmark.py args` where mode bits bind, with a dataset cache of its own."""
    env = dict(os.environ, NCF_CACHE_DIR=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(unprivileged([sys.executable, str(REPO / "run_benchmark.py"), *args]), cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_refused(done: subprocess.CompletedProcess, folder: Path, flag: str) -> None:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot write to {folder} (Permission denied): choose a writable {flag}."], done.stderr
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert "run 1/1" not in done.stdout


def test_a_read_only_results_dir_stops_the_run_before_it_starts(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("earlier")
    read_only(root)
    done = _cli([*QUICK, "--results-dir", str(root)], tmp_path)
    _assert_refused(done, root, "--results-dir")
    assert _snapshot(root) == {"notes.txt": b"earlier"}
    assert not (tmp_path / "cache").exists()   # refused before the data was prepared


def test_a_read_only_result_folder_alone_is_found_too(tmp_path):
    root = tmp_path / "root"
    ncf = root / "results" / "cpu" / "ncf"
    ncf.mkdir(parents=True)
    (ncf / "result_0.txt").write_text(":::MLLOG earlier run\n")
    (ncf / "result_0.json").write_text("{}\n")
    before = _snapshot(root)
    read_only(ncf)
    done = _cli([*QUICK, "--results-dir", str(root)], tmp_path)
    _assert_refused(done, ncf, "--results-dir")
    assert _snapshot(root) == before


def test_a_read_only_systems_folder_is_found_too(tmp_path):
    root = tmp_path / "root"
    systems = root / "systems"
    systems.mkdir(parents=True)
    (systems / "other.json").write_text('{"earlier": true}\n')
    read_only(systems)
    done = _cli([*QUICK, "--results-dir", str(root)], tmp_path)
    _assert_refused(done, systems, "--results-dir")
    assert _snapshot(root) == {"systems/other.json": b'{"earlier": true}\n'}
    assert not (root / "results").exists()   # the probe creates no folders


def test_a_read_only_report_out_keeps_the_earlier_report(tmp_path):
    ncf = tmp_path / "root" / "results" / "test-system" / "ncf"
    ncf.mkdir(parents=True)
    LogBuilder().write(ncf / "result_0.txt")
    out = tmp_path / "report"
    out.mkdir()
    (out / "summary.md").write_text("# the earlier report\n")
    read_only(out)
    done = _cli(["report", str(tmp_path / "root"), "--out", str(out)], tmp_path)
    _assert_refused(done, out, "--out")
    assert _snapshot(out) == {"summary.md": b"# the earlier report\n"}


def test_a_read_only_cache_dir_stops_the_run_before_it_starts(tmp_path):
    cache = tmp_path / "ro-cache"
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "earlier.zip").write_bytes(b"PK earlier")
    read_only(cache)
    done = _cli([*QUICK, "--cache-dir", str(cache), "--results-dir", str(tmp_path / "root")], tmp_path)
    _assert_refused(done, cache, "--cache-dir")
    assert _snapshot(cache) == {"downloads/earlier.zip": b"PK earlier"}
    assert not (tmp_path / "root").exists()


def test_a_read_only_time_to_target_results_dir_is_found_before_any_run(tmp_path):
    root = tmp_path / "keep"
    root.mkdir()
    (root / "notes.txt").write_text("earlier")
    read_only(root)
    done = _cli(["time-to-target", "--system", "cpu", "--dataset", "synthetic-small", "--seeds", "0",
                 "--peer-runs", "0", "--results-dir", str(root)], tmp_path)
    _assert_refused(done, root, "--results-dir")
    assert _snapshot(root) == {"notes.txt": b"earlier"}


def test_a_read_only_download_folder_is_not_blamed_on_the_network(tmp_path):
    """The zip's file is opened before connecting: the mirror (a closed port) is never asked."""
    cache = tmp_path / "cache"
    downloads = read_only(cache / "downloads")
    done = _cli(["data", "--dataset", "ml-100k", "--cache-dir", str(cache), "--mirror", "http://127.0.0.1:9/"],
                tmp_path)
    _assert_refused(done, downloads, "--cache-dir")
    assert list(downloads.iterdir()) == []
