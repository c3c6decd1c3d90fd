"""Find result logs, judge them and read each into a `RunRow`: the runs a report is made of.

Flow: find the logs under the given paths -> judge every log with the compliance checker (one
engine process for all of them) -> parse each (`harness.results.log_parser`) into a `RunRecord`
-> note why a run may not be scored (truncated, inconsistent, non-compliant), so that such a run
is listed with the reason and never enters a score. Grouping and scoring runs is
`harness.report.ranking`'s job.

Inputs understood:
- submission roots: `<root>/results/<system>/ncf/result_<n>.txt` (+ `result_<n>.json` run summary,
  which may carry "host_fingerprint" and the host's values of the description's "detect" fields)
  with `<root>/systems/<system>.json` (MLPerf system description; its "harness" section may
  declare price_per_hour_usd and peak_flops);
- published v0.5 folders: `<dir>/<system>/entry.json` + `<dir>/<system>/ncf/result_<n>.txt`;
- a single `<system>` folder of either kind, or single result files.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from harness.compliance import check_logs
from harness.core.errors import UserError
from harness.results.log_parser import parse_log
from harness.results.run_record import RunRecord, run_record
from harness.results.system_desc import fill_detected

_RESULT = re.compile(r"result_(\d+)\.txt$")

# check_log(path) -> Verdict(path, format, division, passed, failures, warnings)
Checker = Callable[[str], Any]
# "default": the compliance package; None: nothing is checked (every run "unchecked"); or a Checker.
CheckerChoice = Checker | str | None
Judgement = tuple[str, list[str], "str | None"]   # (compliance, notes, division the checker saw)


# ---------------------------------------------------------------------------------------------
# finding the logs


@dataclass
class Source:
    """Where one log was found and what lies beside it."""

    log: Path
    system: str
    published: bool                 # a v0.5-style folder (entry.json)
    description: dict | None        # entry.json or systems/<system>.json
    summary: dict | None            # result_<n>.json beside the log
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path, notes: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path} is not readable JSON ({exc.__class__.__name__})")
        return None
    return data if isinstance(data, dict) else None


def _result_number(path: Path) -> int:
    match = _RESULT.search(path.name)
    return int(match.group(1)) if match else -1


def _system_dirs(path: Path) -> list[Path]:
    """A `<system>` folder itself, or the `<system>` folders of a root or of a published folder."""
    if (path / "ncf").is_dir():
        return [path]
    if (path / "results").is_dir():
        path = path / "results"
    return sorted(d for d in path.iterdir() if d.is_dir() and (d / "ncf").is_dir())


def _sources_in(system_dir: Path, logs: Iterable[Path]) -> list[Source]:
    """The logs of one system folder, each with the folder's description and its own summary.

    A description's "detect" fields (a profile left as the root's description) are filled from
    the summaries of these runs, so the report shows the measured host.
    """
    notes: list[str] = []
    system = system_dir.name
    logs = sorted(logs, key=lambda p: (_result_number(p), p.name))
    summaries = [_read_json(log.with_suffix(".json"), notes) for log in logs]
    entry = _read_json(system_dir / "entry.json", notes)
    description = entry
    if entry is None and system_dir.parent.name == "results":
        path = system_dir.parent.parent / "systems" / f"{system}.json"
        description = _read_json(path, notes)
        if description is not None:
            filled = fill_detected(description, summaries)
            description = filled.description
            notes.extend(f"{path}: {warning}" for warning in filled.warnings())
    return [Source(log, system, entry is not None, description, summary, list(notes))
            for log, summary in zip(logs, summaries)]


def find_logs(paths: Sequence[str | Path]) -> list[Source]:
    """Every result log under `paths`, with its system description and run summary."""
    if not paths:
        raise UserError("Give at least one submission root or published results folder to report on.")
    found: dict[Path, Source] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserError(f"{raw} does not exist.")
        if path.is_file():
            system_dir = path.parent.parent if path.parent.name == "ncf" else path.parent
            sources = _sources_in(system_dir, [path])
        else:
            sources = [s for d in _system_dirs(path) for s in _sources_in(d, (d / "ncf").glob("result_*.txt"))]
        if not sources:
            raise UserError(f"No result logs (<system>/ncf/result_<n>.txt) were found under {raw}.")
        for source in sources:
            found.setdefault(source.log.resolve(), source)
    return list(found.values())


# ---------------------------------------------------------------------------------------------
# runs


@dataclass
class RunRow:
    """One run with its verdict and its part in the score."""

    record: RunRecord
    source: Source
    division: str | None
    host: str | None
    compliance: str                 # "passed" | "failed" | "unchecked" | "checker error"
    compliance_notes: list[str]     # the checker's failures (or warnings when it passed)
    excluded: str | None = None     # why the run is left out of the score
    scoring: str = ""               # "counted", "dropped (fastest)", "outside window", "excluded: ..."

    @property
    def result(self) -> str:
        return self.source.log.stem

    @property
    def compliance_text(self) -> str:
        """"passed (5 warnings)", "failed: <first failure>", "unchecked", ... for tables."""
        if self.compliance == "passed" and self.compliance_notes:
            count = len(self.compliance_notes)
            return f"passed ({count} warning{'s' if count > 1 else ''})"
        if self.compliance in ("failed", "checker error") and self.compliance_notes:
            return f"{self.compliance}: {self.compliance_notes[0]}"
        return self.compliance

    @property
    def achieved_flops(self) -> float | None:
        flops, seconds = self.record.estimated_flops, self.record.time_to_train_s
        return flops / seconds if flops is not None and seconds else None


def _from_verdict(verdict: Any) -> Judgement:
    division = getattr(verdict, "division", None)
    if verdict.passed:
        return "passed", list(verdict.warnings), division
    return "failed", list(verdict.failures), division


def _crash(exc: Exception) -> Judgement:
    return "checker error", [f"{exc.__class__.__name__}: {exc}"], None


def judge_logs(paths: Sequence[Path], checker: CheckerChoice = "default") -> list[Judgement]:
    """Compliance of every log. `checker`: "default" (the compliance package, batched), a
    per-log callable (tests), or None (the caller chose not to check: every run is "unchecked").
    A checker that crashes excludes the runs it could not judge instead of ending the report."""
    if checker is None:
        return [("unchecked", ["not checked"], None)] * len(paths)
    if checker == "default":
        try:
            return [_from_verdict(v) for v in check_logs([str(p) for p in paths])]
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - see docstring
            return [_crash(exc)] * len(paths)
    judged = []
    for path in paths:
        try:
            judged.append(_from_verdict(checker(str(path))))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - see docstring
            judged.append(_crash(exc))
    return judged


def _exclusion(row: RunRow) -> str | None:
    """Why a run may not be scored; None when it may."""
    if row.record.status == "incomplete":
        return "truncated: " + (row.record.abort_reason or "no run_stop")
    if row.record.problems:
        return "log problem: " + row.record.problems[0]
    if row.compliance == "failed":
        return "non-compliant: " + (row.compliance_notes[0] if row.compliance_notes else "checker failed it")
    if row.compliance == "checker error":
        return "compliance checker error: " + row.compliance_notes[0]
    if row.record.time_to_train_s is None:
        return "no time to train"
    return None


def read_run(source: Source, judgement: Judgement) -> RunRow:
    """Parse and record one log, with its compliance judgement."""
    record = run_record(parse_log(source.log), source.system)
    compliance, notes, checked_division = judgement
    division = record.division or checked_division or (source.description or {}).get("division")
    # The run summary names the host of this very run; a resolved system description, the host
    # that wrote the root (older roots may lack summaries).
    described = ((source.description or {}).get("harness") or {})
    host = (source.summary or {}).get("host_fingerprint") or \
        (described.get("host_fingerprint") if isinstance(described, dict) else None)
    row = RunRow(record, source, division, str(host) if host else None, compliance, notes)
    row.excluded = _exclusion(row)
    return row


def collect_runs(paths: Sequence[str | Path], checker: CheckerChoice = "default"
                 ) -> tuple[list[RunRow], list[str]]:
    """Every run under `paths`, judged and read, plus the warnings met on the way."""
    sources = find_logs(paths)
    judged = judge_logs([s.log for s in sources], checker)
    warnings: list[str] = []
    if any(compliance == "unchecked" for compliance, _, _ in judged):
        warnings.append("no compliance checker was given: runs are scored unchecked")
    runs = [read_run(s, j) for s, j in zip(sources, judged)]
    warnings.extend(dict.fromkeys(n for s in sources for n in s.notes))
    return runs, warnings
