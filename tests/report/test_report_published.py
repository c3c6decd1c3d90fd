"""`report` on the published MLPerf v0.5 samples in ../shared: times and scores recomputed here
from the raw `:::MLPv0.5.0` lines, damaged copies reported and left out of the score, the CSV,
markdown and charts written, and the command line."""
from __future__ import annotations

import io
import json
import re
import shutil
import statistics
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from harness import report
from harness.cli import main

PUBLISHED = Path("data") / "mlperf-v0.5-ncf"
RAW = re.compile(r"^:::MLPv0\.5\.0 ncf (\d+(?:\.\d+)?) \([^)]*\) (run_start|run_stop)(?::\s*(.*))?$")


@pytest.fixture(scope="module")
def published(request) -> Path:
    shared = request.getfixturevalue("shared_dir")
    path = shared / PUBLISHED
    if not path.is_dir():
        pytest.skip(f"{path} is absent (published v0.5 NCF logs)")
    return path


def raw_run(log: Path) -> tuple[float, float, bool]:
    """(run_start s, run_stop s, success) straight from the text, independent of the harness."""
    start = stop = success = None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = RAW.match(line.strip())
        if match and match.group(2) == "run_start":
            start = float(match.group(1))
        elif match:
            stop, success = float(match.group(1)), json.loads(match.group(3))["success"]
    return start, stop, success


def v05_score(logs) -> float:
    """v0.5 rule, written out again: first 50 converged by run_start, drop fastest and slowest, mean."""
    runs = sorted(raw_run(log) for log in logs)
    times = [stop - start for start, stop, ok in runs if ok][:50]
    return statistics.mean(sorted(times)[1:-1])


def passing(path):
    return SimpleNamespace(path=path, format="v0.5", division="closed", passed=True, failures=[], warnings=[])


@pytest.fixture(scope="module")
def built(published):
    return report.build_report([published], baseline="skx8180")


def test_every_published_run_is_read_with_its_raw_time(built, published):
    logs = sorted(published.glob("*/ncf/result_*.txt"))
    assert len(built.runs) == len(logs) == 24
    for row in built.runs:
        start, stop, success = raw_run(row.source.log)
        assert row.record.run_start_ms == pytest.approx(start * 1000.0, abs=1e-3)
        assert row.record.time_to_train_s == pytest.approx(stop - start, abs=1e-6)
        assert row.record.converged == success
        assert row.record.epochs[0][0] == 1   # v0.5 epoch 0 shown as epoch 1


def test_scores_equal_the_v05_rule_applied_to_the_raw_lines(built, published):
    assert {s.system for s in built.systems} == {"dgx1_ngc18.11_pytorch", "skx8180"}
    for s in built.systems:
        assert s.ruleset == "v0.5" and s.source == report.PUBLISHED
        logs = sorted((published / s.system / "ncf").glob("result_*.txt"))
        assert s.score.seconds == pytest.approx(v05_score(logs), abs=1e-6)
        converged = sum(raw_run(log)[2] for log in logs)
        assert s.converged == converged and len(s.runs) == len(logs)
        assert s.score.provisional and s.score.reason.startswith(f"{converged} of 50 converged runs")
        assert s.interval.low <= s.score.seconds <= s.interval.high
    fastest, slowest = built.systems
    assert fastest.score.seconds < slowest.score.seconds
    assert slowest.speedup == pytest.approx(1.0)
    assert fastest.speedup == pytest.approx(slowest.score.seconds / fastest.score.seconds)


def test_published_hardware_is_described_from_entry_json(built):
    dgx = next(s for s in built.systems if s.system.startswith("dgx1"))
    assert "8x Tesla V100-SXM2-16GB" in dgx.hardware and dgx.framework == "Pytorch NGC 18.11"
    assert dgx.division == "closed" and dgx.dataset == "ml-20m"


def damaged_copy(published: Path, tmp: Path) -> tuple[Path, Path, Path]:
    """A copy of the dgx1 folder with one log truncated before run_stop and one whose run_start is
    duplicated (a log that claims two timed regions)."""
    system = tmp / "dgx1_ngc18.11_pytorch"
    shutil.copytree(published / "dgx1_ngc18.11_pytorch", system)
    truncated, doubled = system / "ncf" / "result_0.txt", system / "ncf" / "result_4.txt"
    lines = truncated.read_text(encoding="utf-8").splitlines(keepends=True)
    truncated.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    text = doubled.read_text(encoding="utf-8")
    start = next(line for line in text.splitlines() if "run_start" in line)
    doubled.write_text(text.replace(start, start + "\n" + start), encoding="utf-8")
    return system, truncated, doubled


def test_truncated_and_corrupt_logs_are_reported_and_left_out(published, tmp_path):
    system, truncated, doubled = damaged_copy(published, tmp_path)
    built = report.build_report([tmp_path], checker=passing)
    rows = {row.source.log.name: row for row in built.runs}
    assert rows[truncated.name].record.status == "incomplete"
    assert rows[truncated.name].scoring.startswith("excluded: truncated")
    assert rows[doubled.name].scoring.startswith("excluded: log problem: 2 run_start events")
    (s,) = built.systems
    kept = [log for log in sorted((system / "ncf").glob("result_*.txt")) if log not in (truncated, doubled)]
    assert s.score.seconds == pytest.approx(v05_score(kept), abs=1e-6)
    assert len(s.runs) == 12 and len(s.eligible) == 10
    assert any("2 of 12 logs left out of the score" in w for w in built.warnings)
    frame = report.runs_table(built)
    assert (frame["scoring"].str.startswith("excluded")).sum() == 2


def test_a_log_the_checker_fails_is_left_out(published, tmp_path):
    system = tmp_path / "skx8180"
    shutil.copytree(published / "skx8180", system)
    bad = system / "ncf" / "result_2.txt"       # the fastest converged run

    def checker(path):
        verdict = passing(path)
        if Path(path) == bad:
            verdict.passed, verdict.failures = False, ["run_final missing"]
        return verdict

    built = report.build_report([tmp_path], checker=checker)
    row = next(r for r in built.runs if r.source.log == bad)
    assert row.compliance == "failed" and row.scoring == "excluded: non-compliant: run_final missing"
    kept = [log for log in (system / "ncf").glob("result_*.txt") if log != bad]
    assert built.systems[0].score.seconds == pytest.approx(v05_score(kept), abs=1e-6)


def test_real_checker_rejects_a_log_without_run_final(published, tmp_path):
    system = tmp_path / "skx8180"
    shutil.copytree(published / "skx8180", system)
    bad = system / "ncf" / "result_4.txt"
    bad.write_text("".join(line for line in bad.read_text(encoding="utf-8").splitlines(keepends=True)
                           if "run_final" not in line), encoding="utf-8")
    built = report.build_report([tmp_path])
    rows = {r.source.log: r for r in built.runs}
    assert rows[bad].compliance == "failed" and rows[bad].excluded
    assert all(r.compliance == "passed" for log, r in rows.items() if log != bad)
    kept = [log for log in rows if log != bad]
    assert built.systems[0].score.seconds == pytest.approx(v05_score(kept), abs=1e-6)


def markdown_section(text: str, title: str) -> list[list[str]]:
    """Rows (header first) of the pipe table under `## title`."""
    body = text.split(f"## {title}\n", 1)[1]
    lines = [line for line in body.split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    rows = [[cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    return [rows[0]] + rows[2:]   # drop the |---| separator


def test_outputs_are_written_and_agree(built, tmp_path):
    written = report.write_outputs(built, tmp_path / "out")
    summary = written["summary"].read_text(encoding="utf-8")
    for title, name in (("Systems", "systems"), ("Runs", "runs")):
        csv = pd.read_csv(written[name], dtype=str, keep_default_na=False)
        table = markdown_section(summary, title)
        assert table[0] == list(csv.columns)
        assert table[1:] == csv.values.tolist()
    systems = pd.read_csv(written["systems"])
    assert list(systems["system"]) == [s.label for s in built.systems]
    assert systems["score_s"].is_monotonic_increasing
    from matplotlib.image import imread

    for key in ("hr_chart", "time_chart"):
        data = written[key].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        image = imread(io.BytesIO(data), format="png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.05   # not a blank canvas


def test_command_line_json_and_tables(published, tmp_path, capsys):
    assert main(["report", str(published), "--json", "--precision", "0.1", "--baseline", "skx8180"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["baseline"] == "skx8180" and data["precision"] == 0.1
    assert [s["system"] for s in data["systems"]] == ["dgx1_ngc18.11_pytorch", "skx8180"]
    assert all(s["provisional"] and s["runs_needed"] >= 3 for s in data["systems"])
    assert len(data["runs"]) == 24
    assert main(["report", str(published), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "Systems, sorted by score" in out and "skx8180" in out and "provisional" in out
    assert (tmp_path / "o" / "systems.csv").is_file()


@pytest.mark.parametrize("argv,message", [
    (["report", "/no/such/folder"], "does not exist"),
    (["report", "{empty}"], "No result logs"),
    (["report", "{published}", "--baseline", "nope"], "Baseline system 'nope'"),
    (["report", "{published}", "--precision", "2"], "--precision"),
])
def test_user_mistakes_are_one_sentence(argv, message, published, tmp_path, capsys):
    argv = [a.format(empty=tmp_path, published=published) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
