"""Malformed rating rows: the message names the file's own line number (header counted) and shows
the row safely (printable ASCII, truncated), in every layout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.data.bad_rows import EXCERPT_CHARS, safe_excerpt
from harness.data.movielens import RatingFile, read_ratings
from harness.data.registry import CSV_FORMAT, DAT_FORMAT
from tests.support.paths import REPO

HEADER = b"userId,movieId,rating,timestamp\n"
GOOD = b"".join(b"%d,%d,4.0,%d\n" % (u, i, 100 + i) for u in (1, 2) for i in range(1, 6))  # lines 2..11


def _rows(count: int) -> bytes:
    """The first `count` rows of GOOD."""
    return b"".join(GOOD.splitlines(keepends=True)[:count])


def _csv(tmp_path: Path, body: bytes) -> RatingFile:
    path = tmp_path / "ratings.csv"
    path.write_bytes(HEADER + body)
    return RatingFile(path, None, CSV_FORMAT)


def _error(rating_file: RatingFile) -> str:
    with pytest.raises(UserError) as info:
        read_ratings(rating_file)
    return str(info.value)


@pytest.mark.parametrize("body, line, reason", [
    (b"1,2,4.0\n" + GOOD, 2, "3 fields, expected 4"),                 # short first data row
    (GOOD + b"1,2,4.0,5,9\n", 12, "5 fields, expected 4"),              # extra field after 10 good rows
    (_rows(3) + b"1,abc,4.0,5\n" + GOOD, 5, "the item id is not an integer"),
    (GOOD + b"1,2,4.0,\n", 12, "the timestamp is empty"),
    (GOOD + b"99999999999999999999,2,4.0,5\n", 12, "the user id does not fit in 64 bits"),
    (GOOD + b"\n\n7,8,x,9\n", 14, "the rating is not a number"),       # blank lines still count
])
def test_the_message_names_the_files_line_counting_the_header(tmp_path: Path, body: bytes, line: int,
                                                              reason: str) -> None:
    message = _error(_csv(tmp_path, body))
    assert f"has a malformed row at line {line} ({reason}):" in message, message
    numbered = (HEADER + body).split(b"\n")[line - 1].decode()
    assert message.endswith(f"{numbered!r}."), message       # the row shown is the one the number names


def test_a_headerless_layout_counts_from_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"1::2::4::100\n1::3::4\n")
    message = _error(RatingFile(path, None, DAT_FORMAT))
    assert "at line 2 (3 fields, expected 4): '1::3::4'." in message, message


def test_binary_garbage_is_shown_as_a_short_printable_excerpt(tmp_path: Path) -> None:
    garbage = bytes(range(14, 256)) * 4    # no line breaks: one long line
    for body, kind in ((garbage, "after the header"), (None, "instead of the header")):
        path = tmp_path / "ratings.csv"
        path.write_bytes(HEADER + GOOD + body + b"\n" if body is not None else garbage)
        message = _error(RatingFile(path, None, CSV_FORMAT))
        assert message.isprintable() and message.isascii(), (kind, message)
        assert len(message) < len(str(path)) + 200, (kind, message)
        assert "..." in message, (kind, message)


def test_safe_excerpt_keeps_printable_ascii_and_truncates() -> None:
    assert safe_excerpt(b"1,2,4.0,5") == "1,2,4.0,5"
    assert safe_excerpt("ü\x00\x1b[31m".encode()) == "????[31m"   # two bytes of u-umlaut, NUL and ESC
    long = safe_excerpt(b"x" * 500)
    assert long == "x" * EXCERPT_CHARS + "..."


def test_the_data_command_prints_one_error_line(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "ml-latest-small"
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_bytes(HEADER + b"1,2,4.0\n" + GOOD)
    done = subprocess.run([sys.executable, str(REPO / "run_benchmark.py"), "data", "--dataset", "ml-latest-small",
                           "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ}, timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {folder / 'ratings.csv'} has a malformed row at line 2 (3 fields, expected 4): "
                      "'1,2,4.0'."], done.stderr
    assert "Traceback" not in done.stderr
