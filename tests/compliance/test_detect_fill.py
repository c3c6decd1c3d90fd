"""`check` describes the measured host when a root's description is the profile template (issue 25).

Why: after the README quick start in a fresh clone, the root is the project itself and its
systems/cpu.json is the profile with "detect" fields, never overwritten; each run records the
host's values in its summary, so check must fill the placeholders from there, say so when the runs
of one folder disagree, and read the template's division and system_name by the same rules a run
writes them with.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.logbuilder import LogBuilder
from support.template_root import PROFILE, quick_start_root

from harness.cli import main
from harness.core.errors import UserError
from harness.core.paths import SYSTEMS_DIR
from harness.results.system_desc import SUMMARY_DETECTED_KEY
from harness.results.tree import ResultsTree
from harness.run.profiles import detected_values, load_profile, resolved_description
from harness.run.system_description import write_system_description

BUILDER_SYSTEM = "test-system"   # the system name LogBuilder's logs carry


def _check(capsys, path: Path) -> tuple[int, dict]:
    code = main(["check", "--json", str(path)])
    return code, json.loads(capsys.readouterr().out)


def _system_verdict(report: dict) -> dict:
    (verdict,) = [v for v in report["verdicts"] if v["format"] == "system"]
    return verdict


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return quick_start_root(tmp_path_factory.mktemp("quick-start"))


def test_quick_start_into_a_template_root_checks_without_placeholders(root, capsys) -> None:
    code, report = _check(capsys, root / "results")
    system = _system_verdict(report)
    assert code == 0 and system["verdict"] == "PASS", system
    assert system["warnings"] == [] and system["division"] == "open"   # the run was open
    # The template itself is untouched: a profile for any host.
    assert (root / "systems" / "cpu.json").read_bytes() == (SYSTEMS_DIR / "cpu.json").read_bytes()


def test_the_summary_records_what_resolved_description_fills(root) -> None:
    summary = json.loads((root / "results" / PROFILE / "ncf" / "result_0.json").read_text())
    recorded = summary[SUMMARY_DETECTED_KEY]
    resolved = resolved_description(load_profile(PROFILE), system_name=PROFILE)
    detected = resolved["harness"]["detected_fields"]
    assert recorded["system_name"] == PROFILE
    # host_processor_frequency is left out: without a cpufreq driver it is the current clock,
    # which may move between two processes on the same host.
    same = [k for k in detected if k != "host_processor_frequency"]
    assert {k: recorded[k] for k in same} == {k: resolved[k] for k in same}


def _builder_root(tmp_path: Path, models: list[str], division: str = "open") -> Path:
    """A template root of LogBuilder logs whose summaries record `models` as the CPU model."""
    folder = tmp_path / "results" / BUILDER_SYSTEM / "ncf"
    folder.mkdir(parents=True)
    (tmp_path / "systems").mkdir()
    shutil.copy(SYSTEMS_DIR / "cpu.json", tmp_path / "systems" / f"{BUILDER_SYSTEM}.json")
    for n, model in enumerate(models):
        LogBuilder(epochs=2, division=division).write(folder / f"result_{n}.txt")
        values = {**detected_values(BUILDER_SYSTEM, 1), "host_processor_model_name": model}
        (folder / f"result_{n}.json").write_text(json.dumps({SUMMARY_DETECTED_KEY: values}))
    return tmp_path


def test_runs_recorded_on_different_hosts_give_one_warning(tmp_path, capsys) -> None:
    code, report = _check(capsys, _builder_root(tmp_path, ["CPU A", "CPU B"]))
    system = _system_verdict(report)
    assert code == 0 and system["passed"]
    (warning,) = system["warnings"]
    assert warning.startswith("the runs were recorded on different hosts "
                              "(host_processor_model_name 'CPU A' / 'CPU B')")


def test_summaries_without_recorded_values_leave_the_placeholders(tmp_path, capsys) -> None:
    root = _builder_root(tmp_path, ["CPU A"])
    (root / "results" / BUILDER_SYSTEM / "ncf" / "result_0.json").write_text("{}")
    (warning,) = _system_verdict(_check(capsys, root)[1])["warnings"]
    assert warning.startswith("fields still 'detect', and no run summary records them on the "
                              "measured host: system_name, host_processors_per_node,")


def test_a_templates_division_is_not_a_claim_but_a_resolved_descriptions_is(tmp_path, capsys) -> None:
    root = _builder_root(tmp_path, ["CPU A"], division="open")
    assert _system_verdict(_check(capsys, root)[1])["warnings"] == []   # template: closed is its default
    path = root / "systems" / f"{BUILDER_SYSTEM}.json"
    path.write_text(json.dumps(resolved_description(load_profile(PROFILE), system_name="another-name")))
    system = _system_verdict(_check(capsys, root)[1])
    # A run's description claims its division; system_name is a display name, not the file name.
    assert system["warnings"] == ["division is closed but some result logs are open (scored as open)"]


def test_a_run_writes_its_division_and_a_profile_does_not_refuse_it(tmp_path) -> None:
    tree = ResultsTree(tmp_path)
    profile = load_profile(PROFILE)
    shutil.copytree(SYSTEMS_DIR, tmp_path / "systems")
    open_run = resolved_description(profile, system_name=PROFILE, division="open")
    assert write_system_description(tree, PROFILE, open_run) == "profile"   # the template stays
    assert write_system_description(tree, "box", resolved_description(profile, system_name="box",
                                                                      division="open")) == "written"
    written = json.loads((tmp_path / "systems" / "box.json").read_text())
    assert (written["division"], written["system_name"]) == ("open", "box")
    closed_run = resolved_description(profile, system_name="box", division="closed")
    with pytest.raises(UserError, match=r"box\.json describes this system's open results and this run is "
                                        r"closed; a submission claims one division per system"):
        write_system_description(tree, "box", closed_run)
