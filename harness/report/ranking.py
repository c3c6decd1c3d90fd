"""Group runs into systems, score each group and rank the systems: the `Report`.

Runs are grouped by system name, division, dataset, host fingerprint and log format, so that
runs of different machines or rules never share a score; each group is scored by its ruleset
(`harness.report.scoring`) and every run is told its part in that score (counted, dropped,
outside the window, excluded and why). The systems are then sorted by score, with speedups
against an optional baseline. Rendering the report is `harness.report.tables`'s job.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.core.errors import UserError
from harness.report import scoring
from harness.report.collect import CheckerChoice, RunRow, collect_runs

OURS = "this harness"
PUBLISHED = "MLPerf v0.5"


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
                 checker: CheckerChoice = "default") -> Report:
    """Read, judge, group and score every log under `paths` (`checker`: see `collect.judge_logs`)."""
    if not (0 < precision < 1):
        raise UserError(f"--precision must be between 0 and 1 (a fraction of the score), not {precision}.")
    runs, warnings = collect_runs(paths, checker)
    groups: dict[tuple, list[RunRow]] = {}
    for row in runs:
        groups.setdefault(_group_key(row), []).append(row)
    systems = [score_system(key[0], rows, precision, warnings) for key, rows in groups.items()]
    _label_shared_names(systems)
    warnings.extend(_group_warnings(systems))

    systems.sort(key=lambda s: (s.score.seconds is None, s.score.seconds or 0.0, s.system))
    chosen = _baseline(systems, baseline, warnings)
    if chosen is not None and chosen.score.seconds:
        for s in systems:
            if s.score.seconds:
                s.speedup = chosen.score.seconds / s.score.seconds
    runs = [r for s in systems for r in s.runs]
    return Report(runs, systems, warnings, chosen, precision)


def _group_warnings(systems: list[SystemRow]) -> list[str]:
    """Hosts mixed under one name, logs left out, and missing or provisional scores."""
    warnings = []
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
    return warnings


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
