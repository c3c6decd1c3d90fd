"""`run_benchmark.py report PATH... [--baseline SYSTEM] [--out DIR] [--json] [--precision X]`.

Thin: argument parsing and terminal rendering only; `harness.report` does the work, so tests and
other tools get the same numbers without a terminal. No TensorFlow is imported.
"""
from __future__ import annotations

import argparse
import json
import sys

from harness import report as report_mod
from harness.core.writable import require_writable_dir, writing_to

OUT_FLAG = "--out"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="score runs and compare systems (ours and published MLPerf v0.5)",
        description="Read submission roots (<root>/results/<system>/ncf/result_<n>.txt) and published "
                    "v0.5 folders (<system>/entry.json + <system>/ncf/result_<n>.txt); print per-run and "
                    "per-system tables with scores, bootstrap intervals and speedups.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="submission root, results folder or log file")
    p.add_argument("--baseline", metavar="SYSTEM", help="system name that speedups are relative to")
    p.add_argument("--out", metavar="DIR", help="write summary.md, runs.csv, systems.csv and two PNG charts here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--precision", type=float, default=0.05, metavar="X",
                   help="relative 95%% half-width the 'runs needed' column aims for (default 0.05)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.out:   # before reading every log, so a read-only --out costs no wait
        require_writable_dir(args.out, OUT_FLAG)
    result = report_mod.build_report(args.paths, baseline=args.baseline, precision=args.precision)
    written = {}
    if args.out:
        with writing_to(args.out, OUT_FLAG):
            written = report_mod.write_outputs(result, args.out)
    if args.json:
        json.dump(report_mod.report_json(result, written), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_tables(result, written)
    return 0


def _text(value, fmt: str = "{}") -> str:
    """A table cell: '-' for missing values (None, NaN, pandas NA), else `fmt`."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    return fmt.format(value)


def _console():
    """Rich console; piped output is plain and as wide as the tables (harness.core.console says why)."""
    from harness.core.console import make_console

    return make_console()


def print_tables(result: report_mod.Report, written: dict) -> None:
    """Rich tables: systems (sorted by score), their hardware, then runs, then warnings."""
    from rich.table import Table

    console = _console()
    systems = report_mod.systems_table(result)
    table = Table(title="Systems, sorted by score (olympic mean time to train, minutes)")
    for title in ("#", "system", "source", "ruleset", "runs", "converged", "score", "95% CI",
                  "provisional / note", "epochs to target", "runs needed", "speedup", "cost $",
                  "TFLOP/s", "peak share"):
        table.add_column(title, overflow="fold")
    for row, s in zip(systems.to_dict("records"), result.systems):
        ci = "-" if s.interval.low is None else f"{s.interval.low / 60:.3f}-{s.interval.high / 60:.3f}"
        epochs = "-" if s.epochs.count == 0 else \
            f"{s.epochs.mean:.1f} ({s.epochs.minimum:g}-{s.epochs.maximum:g})"
        note = ("provisional: " if s.score.provisional else "") + (s.score.reason or "")
        table.add_row(_text(row["rank"]), s.label, s.source, s.ruleset, str(row["runs"]),
                      f"{row['converged']} ({_text(row['converged_rate'], '{:.0%}')})",
                      _text(row["score_min"], "{:.3f}"), ci, note or "-", epochs,
                      _text(row["runs_needed"]), _text(row["speedup"], "{:.2f}x"),
                      _text(row["cost_usd"], "{:.4f}"), _text(row["achieved_tflops"], "{:.2f}"),
                      _text(row["peak_share"], "{:.1%}"))
    console.print(table)

    table = Table(title="Hardware")
    cols = ("system", "division", "dataset", "host", "hardware", "framework")
    for title in cols:
        table.add_column(title, overflow="fold")
    for row in systems.to_dict("records"):
        table.add_row(*[_text(row[c]) for c in cols])
    console.print(table)

    runs = report_mod.runs_table(result)
    table = Table(title="Runs (by run_start within each system)")
    cols = [("system", "system", "{}"), ("result", "result", "{}"), ("seed", "seed", "{}"),
            ("status", "status", "{}"), ("epochs", "epochs", "{}"),
            ("time_to_train_min", "minutes", "{:.3f}"), ("best_hr", "best HR@10", "{:.4f}"),
            ("train_examples_per_s", "train ex/s", "{:,.0f}"), ("compliance", "compliance", "{}"),
            ("scoring", "in score", "{}")]
    for _, title, _ in cols:
        table.add_column(title, overflow="fold")
    for row in runs.to_dict("records"):
        table.add_row(*[_text(row[c], fmt) for c, _, fmt in cols])
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for path in written.values():
        console.print(f"wrote {path}", highlight=False)
