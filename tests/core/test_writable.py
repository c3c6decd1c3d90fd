"""harness.core.writable: the probe that finds an unwritable folder before the work, and the one
sentence every write site turns an OSError into (issue 25)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.core.writable import require_writable_dir, writing_to
from support.paths import REPO
from support.unprivileged import read_only, unprivileged


def _in_child(code: str) -> str:
    """Run `code` (harness importable) in a process that mode bits bind; its stdout, stripped."""
    command = unprivileged([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n{code}"])
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_writable_folder_passes_and_keeps_no_probe(tmp_path):
    (tmp_path / "earlier.txt").write_text("kept")
    assert require_writable_dir(tmp_path, "--out") == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == ["earlier.txt"]


def test_a_missing_folder_is_probed_where_it_would_be_made_and_not_made(tmp_path):
    """A run stopped later (hardware gate) must leave no empty results/<system>/ncf/ behind."""
    target = tmp_path / "root" / "results" / "cpu" / "ncf"
    assert require_writable_dir(target, "--results-dir") == target
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_is_named(tmp_path):
    blocker = tmp_path / "report.md"
    blocker.write_text("earlier")
    with pytest.raises(UserError) as caught:
        require_writable_dir(blocker / "charts", "--out")
    assert str(caught.value) == f"cannot write to {blocker} (Not a directory): choose a writable --out."
    assert blocker.read_text() == "earlier"


def test_writing_to_turns_an_os_error_into_the_sentence():
    with pytest.raises(UserError) as caught:
        with writing_to("/data/cache/prepared", "--cache-dir"):
            raise OSError(28, "No space left on device", "/data/cache/prepared/.x.npz.tmp")
    assert str(caught.value) == ("cannot write to /data/cache/prepared (No space left on device): "
                                 "choose a writable --cache-dir.")
    assert isinstance(caught.value.__cause__, OSError)


def test_writing_to_lets_every_other_error_through():
    with pytest.raises(ValueError):
        with writing_to("/anywhere", "--out"):
            raise ValueError("not a write")


def test_a_read_only_folder_is_refused_and_named(tmp_path):
    """The probe writes a file; run where mode bits bind (as root: without CAP_DAC_OVERRIDE)."""
    folder = read_only(tmp_path / "ro")
    printed = _in_child(
        "from harness.core.errors import UserError\n"
        "from harness.core.writable import require_writable_dir\n"
        f"try:\n    require_writable_dir({str(folder / 'results')!r}, '--results-dir')\n"
        "except UserError as exc:\n    print(exc)\n")
    assert printed == f"cannot write to {folder} (Permission denied): choose a writable --results-dir."
    assert list(folder.iterdir()) == []


def test_an_unwritable_temporary_area_is_one_sentence(tmp_path):
    folder = read_only(tmp_path / "tmp")
    printed = _in_child(
        "import tempfile\n"
        "from harness.core.errors import UserError\n"
        "from harness.core.writable import scratch_dir\n"
        f"tempfile.tempdir = {str(folder)!r}\n"
        "try:\n    scratch_dir('ncf-test-')\n"
        "except UserError as exc:\n    print(exc)\n")
    assert printed == f"cannot write to {folder} (Permission denied): choose a writable TMPDIR."


def test_the_probe_sees_what_a_write_would_see(tmp_path):
    """A writable folder in the same child passes: the refusals above are the mode bits, not the child."""
    printed = _in_child(
        "from harness.core.writable import require_writable_dir\n"
        f"print(require_writable_dir({str(tmp_path / 'new')!r}, '--out'))\n")
    assert printed == str(tmp_path / "new")
    assert list(Path(tmp_path).iterdir()) == []
