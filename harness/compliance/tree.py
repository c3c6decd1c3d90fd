"""Find the result logs under the paths given to `check`, and judge the submission layout.

A path may be one log file, a `results/<system>/ncf/` folder, a submission root (`results/` and
`systems/`), or a folder of `<system>/ncf/` folders (how the v0.5 samples are stored). Layout
problems and system descriptions get verdicts of their own (format "layout" / "system") next to
the logs' verdicts, so one table shows everything that keeps a submission from being accepted.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.compliance.checker import Verdict, check_logs
from harness.compliance.rules import DIVISIONS
from harness.core.errors import UserError
from harness.results.system_desc import STATUSES, SYSTEM_DESC_FIELDS, fill_detected, is_profile
from reference import constants

RESULT_LOG = re.compile(r"result_(\d+)\.txt")
RESULT_SUMMARY = re.compile(r"result_(\d+)\.json")


def required_result_count() -> int | None:
    """How many result files an MLPerf NCF submission holds, per mlperf-logging's benchmark table."""
    try:
        from mlperf_logging.benchmark_meta import get_result_file_counts

        return get_result_file_counts("training").get(constants.BENCHMARK)
    except (ImportError, ValueError):
        return None


@dataclass
class _SystemCheck:
    """systems/<system>.json and the logs it describes (their divisions must agree with it)."""

    path: Path
    logs: list[Path] = field(default_factory=list)


@dataclass
class _Plan:
    """What to check, in display order: log paths, system checks and ready-made layout verdicts."""

    items: list[Path | _SystemCheck | Verdict] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)

    def add_log(self, path: Path) -> None:
        key = path.resolve()
        if key not in self.seen:
            self.seen.add(key)
            self.items.append(path)

    def add_layout(self, where: Path, failures: list[str], warnings: list[str]) -> None:
        if failures or warnings:
            self.items.append(Verdict(str(where), "layout", None, not failures, failures, warnings))


def _result_number(path: Path) -> int:
    match = RESULT_LOG.fullmatch(path.name)
    return int(match.group(1)) if match else -1


def _ncf_folder(plan: _Plan, folder: Path, systems_dir: Path | None) -> None:
    """results/<system>/ncf/: result_<n>.txt logs (+ result_<n>.json summaries), nothing else."""
    failures, warnings = [], []
    logs = sorted((p for p in folder.iterdir() if p.is_file() and RESULT_LOG.fullmatch(p.name)), key=_result_number)
    strays = sorted(p.name for p in folder.iterdir() if not RESULT_LOG.fullmatch(p.name)
                    and not (p.is_file() and RESULT_SUMMARY.fullmatch(p.name)))
    if strays:
        warnings.append(f"not part of an NCF result folder: {', '.join(strays)}")
    if not logs:
        failures.append("no result_<n>.txt logs in this folder")
    required = required_result_count()
    if logs and required and len(logs) < required:
        warnings.append(f"{len(logs)} result logs; an MLPerf {constants.BENCHMARK} submission has {required}")
    system = folder.parent.name
    check = None
    if systems_dir is not None:
        description = systems_dir / f"{system}.json"
        if description.is_file():
            check = _SystemCheck(description)
        else:
            failures.append(f"no system description systems/{system}.json for results/{system}")
    plan.add_layout(folder, failures, warnings)
    for log in logs:
        plan.add_log(log)
        if check is not None:
            check.logs.append(log)
    if check is not None:
        plan.items.append(check)


def _root(plan: _Plan, root: Path) -> None:
    """A submission root: results/<system>/ncf/ folders and systems/<system>.json descriptions."""
    results, systems = root / "results", root / "systems"
    failures, warnings = [], []
    if not systems.is_dir():
        failures.append("no systems/ folder (systems/<system>.json describes each system)")
    folders = []
    for entry in sorted(results.iterdir()):
        if not entry.is_dir():
            warnings.append(f"results/{entry.name} is not a system folder")
            continue
        if (entry / constants.BENCHMARK).is_dir():
            folders.append(entry / constants.BENCHMARK)
        others = sorted(p.name for p in entry.iterdir() if p.name != constants.BENCHMARK)
        if others:
            warnings.append(f"results/{entry.name}: not {constants.BENCHMARK}, not checked: {', '.join(others)}")
    if not folders:
        failures.append(f"no results/<system>/{constants.BENCHMARK}/ folder")
    if systems.is_dir():
        described = {p.stem for p in systems.glob("*.json")}
        unused = sorted(described - {f.parent.name for f in folders})
        if unused:
            warnings.append(f"system descriptions without results: {', '.join(unused)}")
    plan.add_layout(root, failures, warnings)
    for folder in folders:
        _ncf_folder(plan, folder, systems if systems.is_dir() else None)


def _systems_dir_of(folder: Path) -> Path | None:
    """<root>/systems when `folder` is <root>/results/<system>/ncf, else None."""
    folder = folder.resolve()
    if folder.parent.parent.name == "results" and (folder.parent.parent.parent / "systems").is_dir():
        return folder.parent.parent.parent / "systems"
    return None


def _add_path(plan: _Plan, path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path} does not exist.")
    if path.is_file():
        plan.add_log(path)
    elif (path / "results").is_dir():
        _root(plan, path)
    elif any(RESULT_LOG.fullmatch(p.name) for p in path.iterdir()) or path.name == constants.BENCHMARK:
        _ncf_folder(plan, path, _systems_dir_of(path))
    elif (path / constants.BENCHMARK).is_dir():
        _ncf_folder(plan, path / constants.BENCHMARK, _systems_dir_of(path / constants.BENCHMARK))
    elif any((p / constants.BENCHMARK).is_dir() for p in path.iterdir() if p.is_dir()):
        systems = path.parent / "systems" if path.name == "results" and (path.parent / "systems").is_dir() else None
        for child in sorted(p for p in path.iterdir() if (p / constants.BENCHMARK).is_dir()):
            _ncf_folder(plan, child / constants.BENCHMARK, systems)
    else:
        raise UserError(f"{path} is not a log file, a results/<system>/{constants.BENCHMARK} folder "
                        "or a submission root (results/ and systems/).")


def _summary(log: Path) -> dict | None:
    """The run summary beside a log (result_<n>.json); None when absent or unreadable."""
    try:
        data = json.loads(log.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _claimed_division(description: dict, log_divisions: list[str | None]) -> Any:
    """The division a description claims for its folder (mlperf-logging's package checker reads
    it to decide whether the closed-only checks apply).

    A profile kept as the description (the project's own systems/) states the division it is
    built for, not a claim, so its folder claims what its logs say when they all agree; a run's
    resolved description carries the division of its runs.
    """
    seen = {d for d in log_divisions if d is not None}
    if is_profile(description) and len(seen) == 1:
        return seen.pop()
    return description.get("division")


def _system_verdict(check: _SystemCheck, log_divisions: list[str | None]) -> Verdict:
    """The description's own verdict, its "detect" fields filled from its runs' summaries.

    system_name is not compared with the file name: mlperf-logging's result summarizer shows it
    as the system's display name and links the description by its file name.
    """
    failures, warnings = [], []
    try:
        description = json.loads(check.path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return Verdict(str(check.path), "system", None, False, [f"cannot read the file ({exc})"])
    except ValueError as exc:
        return Verdict(str(check.path), "system", None, False, [f"not valid JSON ({exc})"])
    if not isinstance(description, dict):
        return Verdict(str(check.path), "system", None, False, ["not a JSON object"])
    missing = [name for name in SYSTEM_DESC_FIELDS if name not in description]
    if missing:
        failures.append(f"missing system description fields: {', '.join(missing)}")
    if "status" in description and description["status"] not in STATUSES:
        failures.append(f"status must be one of {', '.join(STATUSES)} (got {description['status']!r})")
    warnings.extend(fill_detected(description, [_summary(log) for log in check.logs]).warnings())
    division = _claimed_division(description, log_divisions)
    if "division" in description and division not in DIVISIONS:
        failures.append(f"division must be closed or open (got {division!r})")
    elif division in DIVISIONS:
        others = sorted({d for d in log_divisions if d is not None and d != division})
        if division == "closed" and others == ["open"]:
            # A closed-capable system may also hold open experiments (other datasets, targets);
            # the logs carry their own division, so this misrepresents nothing.
            warnings.append("division is closed but some result logs are open (scored as open)")
        elif others:
            failures.append(f"division is {division} but the result logs are {', '.join(others)}")
    return Verdict(str(check.path), "system", division if division in DIVISIONS else None,
                   not failures, failures, warnings)


def check_paths(paths: list[str | Path], division: str = "auto") -> list[Verdict]:
    """Every verdict for the given paths: logs (one engine run for all), systems, layout."""
    if not paths:
        raise UserError("give at least one log file, results folder or submission root.")
    plan = _Plan()
    for path in map(Path, paths):
        _add_path(plan, path)
    logs = [item for item in plan.items if isinstance(item, Path)]
    by_log = dict(zip(logs, check_logs(logs, division)))
    verdicts = []
    for item in plan.items:
        if isinstance(item, Path):
            verdicts.append(by_log[item])
        elif isinstance(item, _SystemCheck):
            verdicts.append(_system_verdict(item, [by_log[log].division for log in item.logs]))
        else:
            verdicts.append(item)
    return verdicts
