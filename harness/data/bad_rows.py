"""Find and describe the first malformed row of a rating file, for the one-sentence error.

Why a second pass: pandas' C reader says *that* a file is malformed, but its line numbers count
from the first line it was given (ours start after the header, so they are one short) and a
type error names no line at all. This module is only called after pandas has refused a file, so
its plain-Python scan (about a second per million rows) never costs a good file anything.

The line it reports counts every line of the file, the header included, from 1, as an editor
shows it; the excerpt is printable ASCII only and truncated, so a binary file cannot flood or
garble the terminal.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import BinaryIO

EXCERPT_CHARS = 60
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FIELD_NAMES = ("user id", "item id", "rating", "timestamp")


@dataclass(frozen=True)
class BadRow:
    """The first row that does not parse: its 1-based line number in the file and why."""

    line: int
    reason: str
    excerpt: str

    def sentence(self, where: str) -> str:
        """`<where> has a malformed row at line N (<reason>): '<excerpt>'.`"""
        return f"{where} has a malformed row at line {self.line} ({self.reason}): {self.excerpt!r}."


def safe_excerpt(raw: bytes, limit: int = EXCERPT_CHARS) -> str:
    """`raw` as printable ASCII: other bytes become '?', and more than `limit` characters end in '...'."""
    text = "".join(ch if ch in _PRINTABLE else "?" for ch in raw.decode("ascii", errors="replace"))
    return text if len(text) <= limit else text[:limit] + "..."


def first_bad_row(stream: BinaryIO, separator: str, num_fields: int, first_line: int) -> BadRow | None:
    """Scan `stream` (positioned after any header) for the first row that is not
    `num_fields` fields of int, int, float, int; `first_line` is the file line number of the
    stream's first line. Blank lines are skipped, as the pandas reader skips them.
    """
    sep = separator.encode()
    for number, raw in enumerate(stream, start=first_line):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        reason = _row_problem(line.split(sep), num_fields)
        if reason is not None:
            return BadRow(number, reason, safe_excerpt(line))
    return None


def _row_problem(fields: list[bytes], num_fields: int) -> str | None:
    """Why these fields are not a rating row, or None when they are one."""
    if len(fields) != num_fields:
        return f"{len(fields)} field{'s' if len(fields) != 1 else ''}, expected {num_fields}"
    for position, (field, name) in enumerate(zip(fields, _FIELD_NAMES)):
        problem = _field_problem(field.strip(), as_float=position == 2)
        if problem is not None:
            return f"the {name} {problem}"
    return None


def _field_problem(field: bytes, as_float: bool) -> str | None:
    """Why one field does not parse as the reader's dtype (float for the rating, else int64)."""
    if not field:
        return "is empty"
    try:
        if as_float:
            float(field)
            return None
        value = int(field)
    except ValueError:
        return f"is not {'a number' if as_float else 'an integer'}"
    if not _INT64_MIN <= value <= _INT64_MAX:
        return "does not fit in 64 bits"
    return None
