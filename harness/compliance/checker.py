"""One verdict per result log: the official engine with our NCF rulesets, or the v0.5 rules.

`check_log(path)` is what the runner calls right after run_stop and what `check` and `report`
use. A `:::MLLOG` log passes only if the official mlperf-logging engine accepts it under
rulesets/common.yaml + <division>_ncf.yaml AND the few rules the YAML engine cannot express
cleanly hold (every line readable, time never going backwards across all lines, whatever their
key). A `:::MLPv0.5.0` log is judged by `v05.check_v05`. Anything else fails with a reason;
nothing in a log's content raises.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from harness.compliance.engine import ENGINE_PARSE_SUMMARY, run_engine
from harness.compliance.rules import DIVISIONS
from harness.compliance.v05 import MAX_LISTED, check_v05, entry_division
from harness.core.errors import UserError
from harness.results.log_parser import LogEvent, ParsedLog, parse_log

DIVISION_CHOICES = ("auto", *DIVISIONS)
PASS, PASS_WITH_WARNINGS, FAIL = "PASS", "PASS with warnings", "FAIL"


@dataclass
class Verdict:
    """The judgement of one file (a log, or a system description / layout finding in a tree)."""

    path: str
    format: str          # "mllog" | "v0.5" | "unknown" | "system" | "layout"
    division: str | None
    passed: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if not self.passed:
            return FAIL
        return PASS_WITH_WARNINGS if self.warnings else PASS

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.label}


def _unique(messages: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(messages))


def _division_choice(division: str) -> str:
    if division not in DIVISION_CHOICES:
        raise UserError(f"division must be one of {', '.join(DIVISION_CHOICES)}, not {division!r}.")
    return division


def _declared_division(parsed: ParsedLog) -> str | None:
    event = parsed.first("submission_division")
    return event.value if event is not None and isinstance(event.value, str) else None


def _parse_failures(parsed: ParsedLog) -> list[str]:
    """Lines that look like MLPerf lines but cannot be read (either format): each is a failure."""
    shown = [f"unreadable log line: {error}" for error in parsed.errors[:MAX_LISTED]]
    if len(parsed.errors) > MAX_LISTED:
        shown.append(f"... and {len(parsed.errors) - MAX_LISTED} more unreadable log lines")
    return shown


def _time_failures(events: list[LogEvent]) -> list[str]:
    """Timestamps never go backwards, on every line of either format (the official engine only
    sees the keys it has rules for)."""
    failures = []
    for before, after in zip(events, events[1:]):
        if after.time_ms < before.time_ms:
            failures.append(f"line {after.line_no}: time goes backwards ({after.key} is "
                            f"{before.time_ms - after.time_ms:.0f} ms before line {before.line_no}, {before.key})")
    return failures[:3]


def _mllog_warnings(parsed: ParsedLog, declared: str | None, division: str) -> list[str]:
    warnings = []
    if division != "auto" and declared != division:
        warnings.append(f"the log declares division {declared!r}; judged by the {division} rules as asked")
    if any(e.key == "cache_clear" and e.value is False for e in parsed.events):
        warnings.append("cache_clear is false: the page cache was not cleared before this run "
                        "(data loading is untimed init work, so the timed region is unaffected)")
    return warnings


@dataclass
class _Pending:
    """A log waiting for the engine, with what the Python side already found."""

    verdict: Verdict
    forced: str | None           # division to impose on the engine; None = follow the log
    parse_failures: list[str]
    time_failures: list[str]


def _unknown_verdict(path: Path, parsed: ParsedLog) -> Verdict:
    if path.stat().st_size == 0:
        reason = "the file is empty"
    else:
        reason = "no MLPerf log lines (:::MLLOG or :::MLPv0.5.0) in the file"
    return Verdict(str(path), "unknown", None, False, [reason, *_parse_failures(parsed)])


def _v05_verdict(path: Path, parsed: ParsedLog, division: str) -> Verdict:
    warnings = []
    if division == "auto":
        chosen = entry_division(path)
        if chosen is None:
            chosen = "closed"
            warnings.append("no v0.5 entry.json beside this log declares a division: judged as closed "
                            "(every v0.5 NCF result was closed division)")
    else:
        chosen = division
    failures, deviations = check_v05(parsed, chosen)
    failures = _parse_failures(parsed) + failures + _time_failures(parsed.events)
    return Verdict(str(path), "v0.5", chosen, not failures, failures, warnings + deviations)


def check_logs(paths: Iterable[str | Path], division: str = "auto") -> list[Verdict]:
    """Judge several logs (one engine process for all of them); verdicts in the order given.

    `division`: "auto" = what each log declares (submission_division; for v0.5 logs the
    entry.json of their system), or "closed"/"open" to apply those rules regardless.
    Raises UserError only for a file that cannot be read at all."""
    division = _division_choice(division)
    verdicts: list[Verdict | None] = []
    pending: list[tuple[int, _Pending]] = []
    for path in map(Path, paths):
        parsed = parse_log(path)
        if parsed.format == "v0.5":
            verdicts.append(_v05_verdict(path, parsed, division))
            continue
        if parsed.format != "mllog":
            verdicts.append(_unknown_verdict(path, parsed))
            continue
        declared = _declared_division(parsed)
        chosen = division if division != "auto" else (declared if declared in DIVISIONS else None)
        verdict = Verdict(str(path), "mllog", chosen, False,
                          warnings=_mllog_warnings(parsed, declared, division))
        forced = None if division == "auto" else division
        pending.append((len(verdicts), _Pending(verdict, forced, _parse_failures(parsed),
                                                _time_failures(parsed.events))))
        verdicts.append(None)
    engine = run_engine([(item.verdict.path, item.forced) for _, item in pending])
    for (index, item), said in zip(pending, engine):
        verdict, engine_failures = item.verdict, said.failures
        if item.parse_failures and said.parse_errors:
            # Our per-line parse errors already name the lines; drop the engine's summary of them.
            engine_failures = [f for f in engine_failures if f != ENGINE_PARSE_SUMMARY]
        verdict.failures = _unique(item.parse_failures + engine_failures + item.time_failures)
        verdict.warnings = _unique(verdict.warnings + said.warnings)
        verdict.passed = said.valid and not verdict.failures
        verdicts[index] = verdict
    return [v for v in verdicts if v is not None]


def check_log(path: str | Path, division: str = "auto") -> Verdict:
    """Judge one result log (the runner calls this right after run_stop)."""
    return check_logs([path], division)[0]
