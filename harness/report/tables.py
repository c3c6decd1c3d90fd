"""The report as tables: per run and per system (ranked across systems), and every file and
object made from them.

The per-run and per-system tables are pandas frames; the CSV files, the markdown summary, the
JSON object and the command's terminal tables are all rendered from those frames, so they cannot
disagree.
"""
from __future__ import annotations

import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from harness.core.atomic import atomic_write_text
from harness.core.errors import UserError
from harness.report import charts, scoring
from harness.report.ranking import Report

CHART_HR = "hr_vs_time.png"
CHART_TTT = "time_to_train.png"


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
    roles = {r.record.path: r.scoring for r in report.runs}   # the chart names the runs scoring dropped
    written["hr_chart"] = charts.hr_against_time(groups, out / CHART_HR, roles)
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
