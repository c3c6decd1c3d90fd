"""`run_benchmark.py check PATH... [--json] [--division auto|closed|open]`.

One row per file - logs, system descriptions, layout findings - with the verdict and, for a
failure, the broken rule in plain words. Exit status 0 when nothing fails (warnings allowed),
1 when something fails, 2 for a usage error. `--json` prints one JSON object for machines.
No TensorFlow here: checking must be quick and work on machines that cannot train.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

from harness.compliance.checker import DIVISION_CHOICES, FAIL, PASS, PASS_WITH_WARNINGS, Verdict
from harness.compliance.tree import check_paths

MAX_DETAIL_LINES = 4
STYLES = {PASS: "green", PASS_WITH_WARNINGS: "yellow", FAIL: "bold red"}


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    p = subparsers.add_parser(
        "check", help="check result logs and submission trees for MLPerf NCF compliance",
        description="Judge MLPerf NCF result logs (:::MLLOG with the official mlperf-logging checker and "
                    "this benchmark's rulesets; :::MLPv0.5.0 by the v0.5 rules), result folders and "
                    "submission trees. Exit status 1 if anything fails.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a log file, a results/<system>/ncf folder, or a submission root (results/ + systems/)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--division", choices=DIVISION_CHOICES, default="auto",
                   help="rules to apply: what each log declares (auto, the default), or closed/open for all")
    p.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    verdicts = check_paths(args.paths, args.division)
    passed = all(v.passed for v in verdicts)
    if args.json:
        print(json.dumps(report_dict(verdicts), indent=2))
    else:
        print_table(verdicts)
    return 0 if passed else 1


def report_dict(verdicts: list[Verdict]) -> dict:
    counts = Counter(v.label for v in verdicts)
    return {"passed": all(v.passed for v in verdicts),
            "counts": {label: counts.get(label, 0) for label in (PASS, PASS_WITH_WARNINGS, FAIL)},
            "verdicts": [v.to_dict() for v in verdicts]}


def _base_dir(verdicts: list[Verdict]) -> Path | None:
    """The deepest folder holding every file, so rows can show short relative names."""
    try:
        common = Path(os.path.commonpath([str(Path(v.path).resolve()) for v in verdicts]))
    except ValueError:
        return None
    return common.parent if len(verdicts) == 1 or any(Path(v.path).resolve() == common for v in verdicts) else common


def _details(verdict: Verdict) -> str:
    from rich.markup import escape

    lines = verdict.failures if not verdict.passed else verdict.warnings
    shown = [escape(line) for line in lines[:MAX_DETAIL_LINES]]
    if len(lines) > MAX_DETAIL_LINES:
        shown.append(f"... {len(lines) - MAX_DETAIL_LINES} more (--json lists all)")
    if not verdict.passed and verdict.warnings:
        shown.append(f"[dim]+ {len(verdict.warnings)} warning(s)[/dim]")
    text = "\n".join(shown)
    return text if not verdict.passed else f"[dim]{text}[/dim]"


def print_table(verdicts: list[Verdict]) -> None:
    from rich.table import Table

    from harness.core.console import make_console

    console = make_console()
    base = _base_dir(verdicts)
    table = Table(title=f"NCF compliance: {base}" if base else "NCF compliance", title_justify="left",
                  show_lines=True)
    for column in ("File", "Format", "Division", "Verdict", "Failing rule / warnings"):
        table.add_column(column, overflow="fold")
    for verdict in verdicts:
        path = Path(verdict.path).resolve()
        shown = os.path.relpath(path, base) if base is not None else verdict.path
        style = STYLES[verdict.label]
        table.add_row(shown, verdict.format, verdict.division or "-", f"[{style}]{verdict.label}[/{style}]",
                      _details(verdict))
    console.print(table)
    counts = report_dict(verdicts)["counts"]
    console.print(f"{len(verdicts)} checked: {counts[PASS]} PASS, {counts[PASS_WITH_WARNINGS]} PASS with "
                  f"warnings, {counts[FAIL]} FAIL")
