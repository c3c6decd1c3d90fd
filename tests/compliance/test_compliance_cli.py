"""`run_benchmark.py check`: exit codes, --json, tree layout and system descriptions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from support.logbuilder import LogBuilder  # noqa: E402

from harness.cli import main  # noqa: E402
from harness.compliance.tree import required_result_count  # noqa: E402
from harness.run.profiles import SYSTEM_DESC_FIELDS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _system_description(name: str, division: str = "closed") -> dict:
    description = {field: "n/a" for field in SYSTEM_DESC_FIELDS}
    description.update({"submitter": "test-org", "division": division, "status": "onprem", "system_name": name})
    return description


def _submission(root: Path, system: str = "sysA", logs: int = 2, division: str = "closed",
                description: dict | None = None) -> Path:
    folder = root / "results" / system / "ncf"
    folder.mkdir(parents=True)
    for n in range(logs):
        LogBuilder(epochs=2, division=division).write(folder / f"result_{n}.txt")
        (folder / f"result_{n}.json").write_text("{}")
    (root / "systems").mkdir(exist_ok=True)
    if description is not False:
        text = json.dumps(description if description is not None else _system_description(system, division))
        (root / "systems" / f"{system}.json").write_text(text)
    return root


def _run_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["check", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_passing_log_exit_0_and_table(tmp_path, capsys):
    log = LogBuilder().write(tmp_path / "result_0.txt")
    assert main(["check", str(log)]) == 0
    out = capsys.readouterr().out
    assert "result_0.txt" in out and "PASS" in out and "FAIL" in out.splitlines()[-1]  # summary counts


def test_failing_log_exit_1_with_the_rule_in_plain_words(tmp_path, capsys):
    log = LogBuilder().set("dataset_verification", "unverified").write(tmp_path / "result_0.txt")
    assert main(["check", str(log)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "FAIL" in out and "needs the verified dataset" in out


def test_json_output_is_one_object(tmp_path, capsys):
    good = LogBuilder().write(tmp_path / "good.txt")
    bad = LogBuilder().duplicate("run_start").write(tmp_path / "bad.txt")
    code, report = _run_json(capsys, str(good), str(bad))
    assert code == 1 and report["passed"] is False
    assert report["counts"] == {"PASS": 1, "PASS with warnings": 0, "FAIL": 1}
    first, second = report["verdicts"]
    assert set(first) == {"path", "format", "division", "passed", "failures", "warnings", "verdict"}
    assert (first["verdict"], first["format"], first["division"]) == ("PASS", "mllog", "closed")
    assert any("run_start appears more than once" in f for f in second["failures"])


def test_division_flag(tmp_path, capsys):
    log = LogBuilder(division="open").set("model_hp_mf_dim", 8).write(tmp_path / "open.txt")
    assert main(["check", str(log)]) == 0
    capsys.readouterr()
    code, report = _run_json(capsys, "--division", "closed", str(log))
    assert code == 1 and report["verdicts"][0]["division"] == "closed"


def test_user_errors_exit_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty_dir").mkdir()
    assert main(["check", str(tmp_path / "empty_dir")]) == 2
    assert "is not a log file" in capsys.readouterr().err
    assert main(["check", "--division", "semi", str(tmp_path)]) == 2


def test_submission_root_passes(tmp_path, capsys):
    root = _submission(tmp_path / "sub", logs=2)
    code, report = _run_json(capsys, str(root))
    assert code == 0, report
    formats = [v["format"] for v in report["verdicts"]]
    assert formats.count("mllog") == 2 and formats.count("system") == 1
    layout = [v for v in report["verdicts"] if v["format"] == "layout"]
    # Two logs is fewer than an MLPerf submission holds: a warning, not a failure.
    assert layout and layout[0]["passed"] and any(f"has {required_result_count()}" in w for w in layout[0]["warnings"])


def test_result_folder_inside_a_root_checks_its_system(tmp_path, capsys):
    description = _system_description("sysA")
    del description["host_networking"]
    root = _submission(tmp_path / "sub", logs=1, description=description)
    code, report = _run_json(capsys, str(root / "results" / "sysA" / "ncf"))
    system = next(v for v in report["verdicts"] if v["format"] == "system")
    assert code == 1 and not system["passed"]
    assert system["failures"] == ["missing system description fields: host_networking"]


def test_tree_problems(tmp_path, capsys):
    root = _submission(tmp_path / "sub", system="sysA", logs=1, description=_system_description("sysA", "open"))
    (root / "results" / "sysA" / "ncf" / "notes.md").write_text("stray")
    _submission(root, system="sysB", logs=1, description=False)
    code, report = _run_json(capsys, str(root))
    assert code == 1
    by_path = {Path(v["path"]).relative_to(root).as_posix(): v for v in report["verdicts"]}
    assert by_path["systems/sysA.json"]["failures"] == ["division is open but the result logs are closed"]
    assert any("notes.md" in w for w in by_path["results/sysA/ncf"]["warnings"])
    assert "no system description systems/sysB.json for results/sysB" in by_path["results/sysB/ncf"]["failures"]


def test_invalid_system_json(tmp_path, capsys):
    root = _submission(tmp_path / "sub", logs=1)
    (root / "systems" / "sysA.json").write_text("{not json")
    code, report = _run_json(capsys, str(root))
    system = next(v for v in report["verdicts"] if v["format"] == "system")
    assert code == 1 and system["failures"][0].startswith("not valid JSON")


def test_published_v05_tree(shared_dir, capsys):
    code, report = _run_json(capsys, str(shared_dir / "data" / "mlperf-v0.5-ncf"))
    assert code == 0
    assert report["counts"]["PASS with warnings"] == len(report["verdicts"]) > 0
    assert {v["format"] for v in report["verdicts"]} == {"v0.5"}


def test_run_benchmark_check_end_to_end_without_tensorflow(tmp_path):
    """The real entry point, in a fresh interpreter: exit status, and TensorFlow never imported."""
    good = LogBuilder().write(tmp_path / "good.txt")
    bad = LogBuilder().drop("eval_accuracy", epoch=2).write(tmp_path / "bad.txt")
    probe = ("import runpy, sys\nsys.argv = ['run_benchmark.py', 'check', '--json'] + sys.argv[1:]\n"
             "try:\n    runpy.run_path('run_benchmark.py', run_name='__main__')\n"
             "except SystemExit as exit:\n    code = exit.code\n"
             "print('TF' if 'tensorflow' in sys.modules else 'NO-TF', file=sys.stderr)\nsys.exit(code)\n")
    results = {}
    for log in (good, bad):
        proc = subprocess.run([sys.executable, "-c", probe, str(log)], cwd=REPO, capture_output=True, text=True)
        results[log.name] = (proc.returncode, json.loads(proc.stdout)["passed"], proc.stderr.strip().splitlines()[-1])
    assert results == {"good.txt": (0, True, "NO-TF"), "bad.txt": (1, False, "NO-TF")}
