"""Read an MLPerf result log of either generation into one structure.

Two line formats exist in the wild and both must be judged and reported:

* `:::MLLOG {json}` - today's `mlperf_logging.mllog` lines (what this harness writes);
* `:::MLPv0.5.0 <benchmark> <secs> (<file>:<line>) <key>[: <json>]` - the v0.5 `mlperf_compliance`
  lines of the published 2018 results, which the official checker can no longer read.

Result files are raw console output, so everything else on a line (progress bars, prints) is
ignored. The parser never raises on content: a `:::` line it cannot read becomes an entry in
`ParsedLog.errors` ("line N: ...") so that checkers can fail the log with a precise reason instead
of crashing on it. Only an unreadable file (missing, a directory, no permission) is a `UserError`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import UserError

MLLOG_TOKEN = ":::MLLOG "
V05_TOKEN = ":::MLPv0.5.0 "
# Any other `:::MLPv<version>` prefix is an MLPerf line of a format this parser does not know.
_MLP_PREFIX = re.compile(r":::MLPv\S*")
_V05_LINE = re.compile(
    r"(?P<benchmark>\S+) (?P<secs>\S+) \((?P<source>[^)]*)\) (?P<key>[^\s:]+)(?::\s?(?P<value>.*))?$"
)
EVENT_TYPES = ("POINT_IN_TIME", "INTERVAL_START", "INTERVAL_END")


@dataclass
class LogEvent:
    """One MLPerf log line. v0.5 lines are POINT_IN_TIME with time_ms = seconds * 1000."""

    key: str
    value: Any
    time_ms: float
    event_type: str
    metadata: dict
    line_no: int


@dataclass
class ParsedLog:
    """A whole file: its format ("mllog" | "v0.5" | "unknown"), events in file order, line errors."""

    path: str
    format: str
    events: list[LogEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def all(self, key: str) -> list[LogEvent]:
        """Every event with this key, in file order."""
        return [e for e in self.events if e.key == key]

    def first(self, key: str) -> LogEvent | None:
        """The first event with this key, or None."""
        return next((e for e in self.events if e.key == key), None)


class _LineError(ValueError):
    """A `:::` line that cannot be read; the message says why."""


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_mllog(payload: str, line_no: int) -> LogEvent:
    try:
        record = json.loads(payload)
    except ValueError as exc:
        raise _LineError(f"not valid JSON after :::MLLOG ({exc.msg})") from None
    if not isinstance(record, dict):
        raise _LineError("the :::MLLOG payload is not a JSON object")
    key = record.get("key")
    if not isinstance(key, str) or not key:
        raise _LineError("the :::MLLOG line has no key")
    time_ms = record.get("time_ms")
    if not _finite_number(time_ms):
        raise _LineError(f"{key}: time_ms is missing or not a number")
    if "value" not in record:
        raise _LineError(f"{key}: the :::MLLOG line has no value field")
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _LineError(f"{key}: metadata is not a JSON object")
    event_type = record.get("event_type")
    if event_type not in EVENT_TYPES:
        raise _LineError(f"{key}: event_type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    return LogEvent(key, record["value"], float(time_ms), event_type, metadata, line_no)


def _parse_v05(payload: str, line_no: int) -> LogEvent:
    match = _V05_LINE.match(payload)
    if match is None:
        raise _LineError("not a `:::MLPv0.5.0 <benchmark> <secs> (<file>:<line>) <key>[: <value>]` line")
    try:
        secs = float(match["secs"])
    except ValueError:
        secs = math.nan
    if not math.isfinite(secs):
        raise _LineError(f"{match['key']}: timestamp {match['secs']!r} is not a number")
    raw = match["value"]
    value: Any = None
    if raw is not None and raw.strip():
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.strip()
    source, _, lineno = match["source"].rpartition(":")
    metadata = {"benchmark": match["benchmark"], "file": source or match["source"], "lineno": lineno}
    return LogEvent(match["key"], value, secs * 1000.0, "POINT_IN_TIME", metadata, line_no)


def _read_lines(path: Path) -> tuple[list[str], bool]:
    """The file's lines split on '\\n' only (so numbers match editors and `sed -n`), and whether
    the last line was cut off (no final newline)."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a log file.") from None
    except FileNotFoundError:
        raise UserError(f"{path} does not exist.") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}.") from None
    text = data.decode("utf-8", errors="replace")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    unterminated = bool(text) and not text.endswith("\n")
    if not unterminated and lines and lines[-1] == "":
        lines.pop()
    return lines, unterminated


def parse_log(path: str | Path) -> ParsedLog:
    """Parse one result file; never raises on bad content, raises UserError if it cannot be read.

    The format is the one of the first readable MLPerf line; MLPerf lines of the other format in
    the same file are reported as errors rather than mixed into the events.
    """
    path = Path(path)
    lines, unterminated = _read_lines(path)
    parsed = ParsedLog(str(path), "unknown")
    for line_no, line in enumerate(lines, start=1):
        if ":::" not in line:
            continue
        # Like the official parser: whatever precedes the token (a progress bar) is ignored.
        mllog_at = line.rfind(MLLOG_TOKEN)
        mlp = None if mllog_at >= 0 else _MLP_PREFIX.search(line)
        if mllog_at < 0 and mlp is None:
            continue
        if mllog_at >= 0:
            kind, payload = "mllog", line[mllog_at + len(MLLOG_TOKEN):]
        elif line.startswith(V05_TOKEN, mlp.start()):
            kind, payload = "v0.5", line[mlp.start() + len(V05_TOKEN):]
        else:
            parsed.errors.append(f"line {line_no}: unsupported MLPerf log format {mlp.group(0)!r}")
            continue
        try:
            event = (_parse_mllog if kind == "mllog" else _parse_v05)(payload.strip(), line_no)
        except _LineError as exc:
            cut = unterminated and line_no == len(lines)
            note = " (the file ends in the middle of this line: truncated log?)" if cut else ""
            parsed.errors.append(f"line {line_no}: {exc}{note}")
            continue
        except Exception as exc:  # noqa: BLE001 - garbage must become an error, never a crash
            parsed.errors.append(f"line {line_no}: unreadable MLPerf line ({type(exc).__name__})")
            continue
        if parsed.format == "unknown":
            parsed.format = kind
        if kind != parsed.format:
            parsed.errors.append(f"line {line_no}: a {kind} line in a {parsed.format} log (mixed formats)")
            continue
        parsed.events.append(event)
    return parsed
