"""`report` shows the measured host when a root's description is the profile template (issue 25).

Why: after the README quick start in a fresh clone, systems/cpu.json is the profile with "detect"
fields; the report showed "detectx detect (detect cores)" and framework "detect" instead of the
host the runs were measured on, which each run's summary records.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.logbuilder import LogBuilder
from support.template_root import PROFILE, quick_start_root

from harness.cli import main
from harness.core.paths import SYSTEMS_DIR
from harness.results.system_desc import SUMMARY_DETECTED_KEY
from harness.report.ranking import describe_hardware
from harness.run.profiles import detected_values, load_profile, resolved_description

BUILDER_SYSTEM = "test-system"   # the system name LogBuilder's logs carry


def _report(capsys, tmp_path: Path, path: Path) -> dict:
    assert main(["report", str(path), "--out", str(tmp_path / "out"), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return quick_start_root(tmp_path_factory.mktemp("quick-start"))


def test_the_report_shows_the_detected_host(root, tmp_path, capsys) -> None:
    report = _report(capsys, tmp_path, root / "results")
    (system,) = report["systems"]
    hardware, framework = describe_hardware(resolved_description(load_profile(PROFILE)))
    assert (system["hardware"], system["framework"]) == (hardware, framework)
    assert "detect" not in hardware and framework.startswith("TensorFlow ")
    assert not [w for w in report["warnings"] if "detect" in w or "different hosts" in w]


def test_runs_of_different_hosts_are_named_not_picked(tmp_path, capsys) -> None:
    folder = tmp_path / "root" / "results" / BUILDER_SYSTEM / "ncf"
    folder.mkdir(parents=True)
    (tmp_path / "root" / "systems").mkdir()
    shutil.copy(SYSTEMS_DIR / "cpu.json", tmp_path / "root" / "systems" / f"{BUILDER_SYSTEM}.json")
    for n, model in enumerate(["CPU A", "CPU B"]):
        LogBuilder(epochs=2).write(folder / f"result_{n}.txt")
        values = {**detected_values(BUILDER_SYSTEM, 1), "host_processor_model_name": model}
        (folder / f"result_{n}.json").write_text(json.dumps({SUMMARY_DETECTED_KEY: values}))
    report = _report(capsys, tmp_path, tmp_path / "root")
    (system,) = report["systems"]
    assert "CPU A / CPU B" in system["hardware"]
    (warning,) = [w for w in report["warnings"] if "different hosts" in w]
    assert "host_processor_model_name 'CPU A' / 'CPU B'" in warning
