"""The committed example submission root (results/examples) is a compliant, reportable submission.

Why: a fresh clone has no results of its own; the examples are what `check` and `report` show a
newcomer, so they must stay compliant as the checker and the report evolve.
"""
from __future__ import annotations

import json

from harness.cli import main
from support.paths import REPO

EXAMPLES = REPO / "results" / "examples"


def test_examples_pass_the_checker_without_warnings(capsys) -> None:
    assert main(["check", str(EXAMPLES), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["passed"]
    assert all(v["verdict"] == "PASS" and not v.get("warnings") for v in verdict["verdicts"]), verdict["verdicts"]
    assert len([v for v in verdict["verdicts"] if str(v.get("path", "")).endswith(".txt")]) == 10


def test_examples_report_a_scored_system(capsys, tmp_path) -> None:
    assert main(["report", str(EXAMPLES), "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (system,) = report["systems"]
    assert system["system"] == "cpu-epyc-2c-avx2" and system["converged"] == 10
    assert system["score_s"] > 0 and system["hardware"].startswith("AMD EPYC")
