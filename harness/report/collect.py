"""Compare runs and systems: our submission roots beside published MLPerf v0.5 results.

Flow: find the logs under the given paths -> parse each (`harness.log_parser`) into a `RunRecord`
-> judge it (`harness.compliance.check_log`) -> group runs by system name, division, dataset,
host fingerprint and log format -> score each group by its ruleset (`harness.scoring`) -> one
table across systems sorted by score. The per-run and per-system tables are pandas frames; the
CSV files, the markdown summary and the terminal tables are all rendered from those frames, so
they cannot disagree. A log that is truncated, inconsistent or non-compliant is listed with the
reason and never enters a score.

Inputs understood:
- submission roots: `<root>/results/<system>/ncf/result_<n>.txt` (+ `result_<n>.json` run summary,
  which may carry "host_fingerprint") with `<root>/systems/<system>.json` (MLPerf system
  description; its "harness" section may declare price_per_hour_usd and peak_flops);
- published v0.5 folders: `<dir>/<system>/entry.json` + `<dir>/<system>/ncf/result_<n>.txt`;
- a single `<system>` folder of either kind, or single result files.
"""
from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from harness.report import charts
from harness.report import scoring
from harness.core.atomic import atomic_write_text
from harness.core.errors import UserError
from harness.results.log_parser import parse_log
from harness.results.run_record import RunRecord, run_record

OURS = "this harness"
PUBLISHED = "MLPerf v0.5"
CHART_HR = "hr_vs_time.png"
CHART_TTT = "time_to_train.png"
_RESULT = re.compile(r"result_(\d+)\.txt$")

# check_log(path) -> Verdict(path, format, division, passed, failures, warnings), and its batch form
Checker = Callable[[str], Any]
BatchChecker = Callable[[list[str]], list[Any]]


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
    notes: list[str] = []
    system = system_dir.name
    entry = _read_json(system_dir / "entry.json", notes)
    description = entry
    if entry is None and system_dir.parent.name == "results":
        description = _read_json(system_dir.parent.parent / "systems" / f"{system}.json", notes)
    return [Source(log, system, entry is not None, description,
                   _read_json(log.with_suffix(".json"), notes), list(notes))
            for log in sorted(logs, key=lambda p: (_result_number(p), p.name))]


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


def default_checker() -> BatchChecker | None:
    """The compliance package's `check_logs` (one engine process for all logs), or None when
    it is not installed."""
    try:
        from harness.compliance import check_logs
    except ImportError:
        return None
    return check_logs


Judgement = tuple[str, list[str], "str | None"]   # (compliance, notes, division the checker saw)


def _from_verdict(verdict: Any) -> Judgement:
    division = getattr(verdict, "division", None)
    if verdict.passed:
        return "passed", list(verdict.warnings), division
    return "failed", list(verdict.failures), division


def _crash(exc: Exception) -> Judgement:
    return "checker error", [f"{exc.__class__.__name__}: {exc}"], None


def judge_logs(paths: Sequence[Path], checker: Checker | None | str = "default") -> list[Judgement]:
    """Compliance of every log. `checker`: "default" (the compliance package, batched), a
    per-log callable (tests), or None (nothing available: every run is "unchecked"). A checker
    that crashes excludes the runs it could not judge instead of ending the report."""
    if checker == "default":
        batch = default_checker()
        if batch is not None:
            try:
                return [_from_verdict(v) for v in batch([str(p) for p in paths])]
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - see docstring
                return [_crash(exc)] * len(paths)
        checker = None
    if checker is None:
        return [("unchecked", ["compliance checker not available"], None)] * len(paths)
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


# ---------------------------------------------------------------------------------------------
# systems


@dataclass
class SystemRow:
    """One group of runs (system name, division, dataset, host, format) and its score."""

    system: str
    source: str                     # OURS | PUBLISHED
    division: str | None
    dataset: str | None
    host: str | None
    hardware: str
    framework: str
    ruleset: str
    runs: list[RunRow]
    score: scoring.Score
    interval: scoring.Interval
    epochs: scoring.Spread
    runs_needed: int | None
    price_per_hour: float | None
    peak_flops: float | None
    speedup: float | None = None
    label: str = ""                 # the system name, plus what tells apart groups sharing it

    @property
    def eligible(self) -> list[RunRow]:
        return [r for r in self.runs if r.excluded is None]

    @property
    def converged(self) -> int:
        return sum(r.record.converged for r in self.eligible)

    @property
    def converged_rate(self) -> float | None:
        return self.converged / len(self.eligible) if self.eligible else None

    @property
    def cost_usd(self) -> float | None:
        if self.price_per_hour is None or self.score.seconds is None:
            return None
        return self.price_per_hour * self.score.seconds / 3600.0

    @property
    def achieved_flops(self) -> float | None:
        """Mean achieved model FLOP/s over the runs the score averaged (else over converged runs)."""
        counted = set(self.score.counted)
        runs = [r for r in self.eligible if str(r.source.log) in counted] or \
               [r for r in self.eligible if r.record.converged]
        values = [r.achieved_flops for r in runs if r.achieved_flops is not None]
        return sum(values) / len(values) if values else None

    @property
    def peak_share(self) -> float | None:
        achieved = self.achieved_flops
        return achieved / self.peak_flops if achieved is not None and self.peak_flops else None


def _positive(section: dict, key: str, system: str, warnings: list[str]) -> float | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    warnings.append(f"{system}: harness.{key} = {value!r} is not a positive number; ignored")
    return None


def describe_hardware(description: dict | None) -> tuple[str, str]:
    """(hardware, framework) in a few words, from an MLPerf system JSON or a v0.5 entry.json."""
    d = description or {}
    if "nodes" in d:   # v0.5 entry.json
        node = (d.get("nodes") or [{}])[0]
        parts = []
        count = node.get("num_accelerators")
        if isinstance(count, int) and count > 0:
            parts.append(f"{count}x {node.get('accelerator')}")
        cores = node.get("num_cores")
        parts.append(f"{node.get('cpu')}" + (f" ({cores} cores)" if cores not in (None, "NA") else ""))
        nodes = node.get("num_nodes")
        hardware = "; ".join(parts)
        if isinstance(nodes, int) and nodes > 1:
            hardware = f"{nodes} nodes x ({hardware})"
        return hardware, str(d.get("framework") or "")
    if not d:
        return "", ""
    parts = []
    count = d.get("accelerators_per_node")
    try:
        count = int(count)
    except (TypeError, ValueError):
        count = 0
    if count > 0:
        parts.append(f"{count}x {d.get('accelerator_model_name')}")
    cpu = d.get("host_processor_model_name")
    if cpu:
        sockets, cores = d.get("host_processors_per_node"), d.get("host_processor_core_count")
        parts.append((f"{sockets}x " if sockets not in (None, "", 1, "1") else "") + str(cpu)
                     + (f" ({cores} cores)" if cores not in (None, "") else ""))
    hardware = "; ".join(parts)
    nodes = d.get("number_of_nodes")
    if nodes not in (None, "", 1, "1"):
        hardware = f"{nodes} nodes x ({hardware})"
    return hardware, str(d.get("framework") or "")


def _attempt(row: RunRow) -> scoring.Attempt:
    return scoring.Attempt(str(row.source.log), row.record.run_start_ms or 0.0,
                           row.record.time_to_train_s, row.record.converged)


def score_system(system: str, runs: list[RunRow], precision: float, warnings: list[str]) -> SystemRow:
    """Score one group and annotate each run with its part in that score."""
    first = runs[0]
    ruleset = scoring.V05 if first.record.format == "v0.5" else scoring.CURRENT
    runs = sorted(runs, key=lambda r: (r.record.run_start_ms is None, r.record.run_start_ms or 0.0))
    eligible = [r for r in runs if r.excluded is None]
    result = scoring.score(ruleset, [_attempt(r) for r in eligible])
    in_window = {a.key for a in result.window}
    for row in runs:
        key = str(row.source.log)
        if row.excluded:
            row.scoring = "excluded: " + row.excluded
        elif key in result.counted:
            row.scoring = "counted"
        elif key in result.dropped:
            row.scoring = f"dropped ({result.dropped[key]})"
        elif key not in in_window:
            row.scoring = "outside window"
        elif result.seconds is None:
            row.scoring = "no score"
        else:
            row.scoring = "not converged"
    converged_times = [r.record.time_to_train_s for r in eligible if r.record.converged]
    description = first.source.description
    hardware, framework = describe_hardware(description)
    harness_section = (description or {}).get("harness") or {}
    if not isinstance(harness_section, dict):
        harness_section = {}
    return SystemRow(
        system=system, source=PUBLISHED if first.source.published else OURS,
        division=first.division, dataset=first.record.dataset, host=first.host,
        hardware=hardware, framework=framework, ruleset=ruleset, runs=runs, score=result,
        interval=scoring.bootstrap_interval(result),
        epochs=scoring.Spread.of([r.record.epochs_to_target for r in eligible if r.record.converged]),
        runs_needed=scoring.runs_needed(converged_times, precision),
        price_per_hour=_positive(harness_section, "price_per_hour_usd", system, warnings),
        peak_flops=_positive(harness_section, "peak_flops", system, warnings),
        label=system,
    )


def _label_shared_names(systems: list[SystemRow]) -> None:
    """Groups that share a system name get what differs between them (host, division, dataset,
    source, ruleset) appended, so tables and charts never show two rows with the same name."""
    by_name: dict[str, list[SystemRow]] = {}
    for s in systems:
        by_name.setdefault(s.system, []).append(s)
    for same in by_name.values():
        if len(same) < 2:
            continue
        keys = [((s.host or "no host")[:12], s.division or "-", s.dataset or "-", s.source, s.ruleset)
                for s in same]
        differs = [i for i in range(len(keys[0])) if len({k[i] for k in keys}) > 1]
        for s, k in zip(same, keys):
            s.label = f"{s.system} [{', '.join(k[i] for i in differs)}]"


# ---------------------------------------------------------------------------------------------
# the report


@dataclass
class Report:
    runs: list[RunRow]
    systems: list[SystemRow]        # sorted by score (no score last)
    warnings: list[str]
    baseline: SystemRow | None
    precision: float


def _group_key(row: RunRow) -> tuple:
    return (row.source.system, row.division or "", row.record.dataset or "", row.host or "",
            row.record.format, row.source.published)


def build_report(paths: Sequence[str | Path], baseline: str | None = None, precision: float = 0.05,
                 checker: Checker | None | str = "default") -> Report:
    """Read, judge, group and score every log under `paths` (`checker`: see `judge_logs`)."""
    if not (0 < precision < 1):
        raise UserError(f"--precision must be between 0 and 1 (a fraction of the score), not {precision}.")
    sources = find_logs(paths)
    judged = judge_logs([s.log for s in sources], checker)
    warnings: list[str] = []
    if any(compliance == "unchecked" for compliance, _, _ in judged):
        warnings.append("compliance checker not available: runs are scored unchecked")
    runs = [read_run(s, j) for s, j in zip(sources, judged)]
    for note in dict.fromkeys(n for s in sources for n in s.notes):
        warnings.append(note)

    groups: dict[tuple, list[RunRow]] = {}
    for row in runs:
        groups.setdefault(_group_key(row), []).append(row)
    systems = [score_system(key[0], rows, precision, warnings) for key, rows in groups.items()]
    _label_shared_names(systems)

    hosts: dict[str, set[str]] = {}
    for s in systems:
        hosts.setdefault(s.system, set()).add(s.host or "unknown host")
    for name, seen in sorted(hosts.items()):
        if len(seen) > 1:
            warnings.append(f"system {name} mixes {len(seen)} hosts ({', '.join(sorted(seen))}); "
                            "each host is scored separately")
    for s in systems:
        bad = [r for r in s.runs if r.excluded]
        if bad:
            warnings.append(f"{s.label}: {len(bad)} of {len(s.runs)} logs left out of the score "
                            f"({'; '.join(sorted({r.excluded.split(':')[0] for r in bad}))})")
        if s.score.seconds is None:
            warnings.append(f"{s.label}: no score ({s.score.reason})")
        elif s.score.provisional:
            warnings.append(f"{s.label}: provisional score ({s.score.reason})")

    systems.sort(key=lambda s: (s.score.seconds is None, s.score.seconds or 0.0, s.system))
    chosen = _baseline(systems, baseline, warnings)
    if chosen is not None and chosen.score.seconds:
        for s in systems:
            if s.score.seconds:
                s.speedup = chosen.score.seconds / s.score.seconds
    runs = [r for s in systems for r in s.runs]
    return Report(runs, systems, warnings, chosen, precision)


def _baseline(systems: list[SystemRow], name: str | None, warnings: list[str]) -> SystemRow | None:
    if name is None:
        return None
    matches = [s for s in systems if s.system == name]
    if not matches:
        known = ", ".join(sorted({s.system for s in systems}))
        raise UserError(f"Baseline system {name!r} is not among the reported systems ({known}).")
    if len(matches) > 1:
        warnings.append(f"baseline {name} has {len(matches)} groups; using {matches[0].label}, the fastest")
    if matches[0].score.seconds is None:
        warnings.append(f"baseline {name} has no score, so no speedups are shown")
    return matches[0]


# ---------------------------------------------------------------------------------------------
# tables (the one source for CSV, markdown and the terminal)


def _round(value: float | None, digits: int) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def _utc(ms: float | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


RUN_COLUMNS = ["system", "source", "result", "division", "dataset", "host", "seed", "status", "epochs",
               "epochs_to_target", "time_to_train_s", "time_to_train_min", "best_hr",
               "train_examples_per_s", "achieved_tflops", "compliance", "scoring", "run_start_utc", "path"]


def runs_table(report: Report) -> pd.DataFrame:
    """One row per run, in system order then run_start order."""
    rows = []
    for s in report.systems:
        for r in s.runs:
            rec = r.record
            rows.append({
                "system": s.label, "source": s.source, "result": r.result, "division": r.division,
                "dataset": rec.dataset, "host": r.host, "seed": rec.seed, "status": rec.status_text,
                "epochs": len(rec.epochs), "epochs_to_target": rec.epochs_to_target,
                "time_to_train_s": _round(rec.time_to_train_s, 3),
                "time_to_train_min": _round(None if rec.time_to_train_s is None else rec.time_to_train_s / 60, 4),
                "best_hr": _round(rec.best_hr, 4),
                "train_examples_per_s": _round(rec.examples_per_s, 0),
                "achieved_tflops": _round(None if r.achieved_flops is None else r.achieved_flops / 1e12, 3),
                "compliance": r.compliance_text, "scoring": r.scoring,
                "run_start_utc": _utc(rec.run_start_ms), "path": str(r.source.log),
            })
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return frame.astype({"seed": "Int64", "epochs_to_target": "Int64", "train_examples_per_s": "Int64"})


SYSTEM_COLUMNS = ["rank", "system", "source", "division", "dataset", "host", "hardware", "framework",
                  "ruleset", "runs", "excluded", "converged", "converged_rate", "score_s", "score_min",
                  "provisional", "note", "ci95_low_s", "ci95_high_s", "epochs_to_target_mean",
                  "epochs_to_target_min", "epochs_to_target_max", "runs_needed", "speedup",
                  "cost_usd", "achieved_tflops", "peak_share"]


def systems_table(report: Report) -> pd.DataFrame:
    """One row per system group, sorted by score (fastest first; no score last)."""
    rows = []
    for rank, s in enumerate(report.systems, start=1):
        rows.append({
            "rank": rank if s.score.seconds is not None else None, "system": s.label, "source": s.source,
            "division": s.division, "dataset": s.dataset, "host": s.host, "hardware": s.hardware,
            "framework": s.framework, "ruleset": s.ruleset, "runs": len(s.runs),
            "excluded": len(s.runs) - len(s.eligible), "converged": s.converged,
            "converged_rate": _round(s.converged_rate, 3),
            "score_s": _round(s.score.seconds, 3), "score_min": _round(s.score.minutes, 4),
            "provisional": s.score.provisional, "note": s.score.reason,
            "ci95_low_s": _round(s.interval.low, 3), "ci95_high_s": _round(s.interval.high, 3),
            "epochs_to_target_mean": _round(s.epochs.mean, 2),
            "epochs_to_target_min": s.epochs.minimum, "epochs_to_target_max": s.epochs.maximum,
            "runs_needed": s.runs_needed, "speedup": _round(s.speedup, 3),
            "cost_usd": _round(s.cost_usd, 4),
            "achieved_tflops": _round(None if s.achieved_flops is None else s.achieved_flops / 1e12, 3),
            "peak_share": _round(s.peak_share, 4),
        })
    frame = pd.DataFrame(rows, columns=SYSTEM_COLUMNS)
    return frame.astype({"rank": "Int64", "epochs_to_target_min": "Int64",
                         "epochs_to_target_max": "Int64", "runs_needed": "Int64"})


def csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table whose cells are exactly the CSV's cells (read back as text)."""
    cells = pd.read_csv(io.StringIO(csv_text(frame)), dtype=str, keep_default_na=False)
    esc = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cells.columns) + " |",
             "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)


def summary_markdown(report: Report) -> str:
    lines = ["# NCF benchmark report", ""]
    if report.baseline is not None:
        lines += [f"Speedup is relative to **{report.baseline.label}**.", ""]
    lines += [
        "Scores are olympic means of time to train (run_start to run_stop) in seconds: "
        f"`{scoring.CURRENT}` = the first {scoring.CURRENT_RUNS} runs by run_start, fastest and slowest "
        "dropped (one non-converged run may be the dropped slowest, two give no score); "
        f"`{scoring.V05}` = the first {scoring.V05_CONVERGED_RUNS} converged of {scoring.V05_RUNS} runs, "
        "fastest and slowest dropped. ci95 is a bootstrap interval; runs_needed is the number of "
        f"converged runs for a 95% half-width of {report.precision:g} x the score.", "",
        "## Systems", "", markdown_table(systems_table(report)), "",
        "## Runs", "", markdown_table(runs_table(report)), "",
    ]
    if report.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report.warnings] + [""]
    lines += ["## Charts", "", f"![HR@10 against time]({CHART_HR})", "",
              f"![Time to train per system]({CHART_TTT})", ""]
    return "\n".join(lines)


def write_outputs(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """summary.md, runs.csv, systems.csv and the two charts in `out_dir`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory.")
    out.mkdir(parents=True, exist_ok=True)
    written = {"summary": out / "summary.md", "runs": out / "runs.csv", "systems": out / "systems.csv"}
    atomic_write_text(written["summary"], summary_markdown(report))
    atomic_write_text(written["runs"], csv_text(runs_table(report)))
    atomic_write_text(written["systems"], csv_text(systems_table(report)))
    groups = {s.label: [r.record for r in s.runs] for s in report.systems}
    written["hr_chart"] = charts.hr_against_time(groups, out / CHART_HR)
    written["time_chart"] = charts.time_to_train(groups, out / CHART_TTT)
    return written


def _plain(frame: pd.DataFrame) -> list[dict]:
    """Frame rows as JSON-ready dicts (pandas NA -> None)."""
    return json.loads(frame.to_json(orient="records"))


def report_json(report: Report, written: dict[str, Path] | None = None) -> dict:
    """The whole report as one JSON-ready object (full precision where it matters)."""
    systems = _plain(systems_table(report))
    for row, s in zip(systems, report.systems):
        row["score_s"], row["ci95_low_s"], row["ci95_high_s"] = s.score.seconds, s.interval.low, s.interval.high
        row["bootstrap_valid_fraction"] = s.interval.valid_fraction
        row["counted_runs"] = len(s.score.counted)
        row["epochs_to_target_median"] = s.epochs.median
    runs = _plain(runs_table(report))
    for row, r in zip(runs, report.runs):
        row["time_to_train_s"] = r.record.time_to_train_s
        row["hr_by_epoch"] = [[n, hr] for n, hr, _ in r.record.epochs]
        row["compliance_notes"] = r.compliance_notes
        row["problems"] = r.record.problems
    return {
        "baseline": report.baseline.label if report.baseline else None,
        "precision": report.precision,
        "systems": systems,
        "runs": runs,
        "warnings": report.warnings,
        "outputs": {k: str(v) for k, v in (written or {}).items()},
    }
