"""The submission layout: atomic run numbers, incomplete runs, and system descriptions that are
never silently replaced."""
from __future__ import annotations

import json
import multiprocessing
import shutil
import threading

import pytest

from harness.core.errors import UserError
from harness.results.tree import ResultsTree
from harness.run.profiles import DEFAULT_SYSTEMS_DIR, load_profile, resolved_description
from harness.run.system_description import write_system_description


def test_claims_count_from_zero_and_create_the_log(tmp_path):
    tree = ResultsTree(tmp_path)
    n, log, summary = tree.claim_next_result("cpu")
    assert n == 0
    assert log == tmp_path / "results" / "cpu" / "ncf" / "result_0.txt" and log.exists()
    assert summary == tmp_path / "results" / "cpu" / "ncf" / "result_0.json" and not summary.exists()
    assert tree.claim_next_result("cpu")[0] == 1
    assert tree.claim_next_result("other")[0] == 0
    assert tree.system_description_path("cpu") == tmp_path / "systems" / "cpu.json"


def test_racing_threads_get_distinct_numbers(tmp_path):
    claimed: list[int] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        tree = ResultsTree(tmp_path)
        barrier.wait()
        for _ in range(15):
            claimed.append(tree.claim_next_result("cpu")[0])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == list(range(8 * 15))


def test_a_stale_listing_cannot_reuse_a_number(tmp_path, monkeypatch):
    # The directory listing only suggests where to start; the O_EXCL create decides. Simulate a
    # listing taken before other runs claimed 0 and 1, and before run 2 was marked incomplete.
    tree = ResultsTree(tmp_path)
    for _ in range(3):
        tree.claim_next_result("cpu")
    tree.mark_incomplete(2)
    monkeypatch.setattr(tree, "_used_numbers", lambda system: set())
    n, log, _ = tree.claim_next_result("cpu")
    assert n == 3 and log.name == "result_3.txt"
    assert not (log.parent / "result_2.txt").exists()


def _claim_in_process(root: str, start, count: int, out) -> None:
    tree = ResultsTree(root)
    start.wait()
    out.put([tree.claim_next_result("cpu")[0] for _ in range(count)])


def test_racing_processes_get_distinct_numbers(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold TF threads
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(str(tmp_path), start, 20, out))
             for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    claimed = [n for _ in procs for n in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(claimed) == list(range(60))


def test_incomplete_runs_keep_their_number_but_are_not_counted(tmp_path):
    tree = ResultsTree(tmp_path)
    n0, log0, summary0 = tree.claim_next_result("cpu")
    log0.write_text(":::MLLOG complete run\n")
    summary0.write_text("{}")
    n1, log1, summary1 = tree.claim_next_result("cpu")
    log1.write_text(":::MLLOG interrupted run\n")
    summary1.write_text("{}")
    moved = tree.mark_incomplete(n1)  # system defaults to the last claim
    assert moved.name == "result_1.txt.incomplete" and moved.read_text() == ":::MLLOG interrupted run\n"
    assert not log1.exists() and not summary1.exists()
    assert tree.mark_incomplete(n1, "cpu") == moved  # idempotent
    assert log0.read_text() == ":::MLLOG complete run\n"  # earlier results untouched
    assert sorted(p.name for p in log0.parent.glob("result_*.txt")) == ["result_0.txt"]
    n2, _, _ = ResultsTree(tmp_path).claim_next_result("cpu")
    assert n2 == 2  # the incomplete run keeps number 1
    entries = tree.results("cpu")
    assert [(e.n, e.complete) for e in entries] == [(0, True), (1, False), (2, True)]
    assert entries[1].log_path == moved and entries[1].summary_path.name == "result_1.json.incomplete"
    assert tree.systems() == ["cpu"] and len(tree.results()) == 3
    with pytest.raises(ValueError):
        ResultsTree(tmp_path).mark_incomplete(0)


def test_bad_system_names_are_refused(tmp_path):
    for name in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(UserError, match="must be a plain name"):
            ResultsTree(tmp_path).claim_next_result(name)
    assert not (tmp_path / "results").exists()


def test_system_description_written_then_unchanged_then_refused(tmp_path):
    tree = ResultsTree(tmp_path)
    desc = resolved_description(load_profile("cpu"))
    assert write_system_description(tree, "cpu", desc) == "written"
    path = tmp_path / "systems" / "cpu.json"
    assert json.loads(path.read_text()) == desc
    from mlperf_logging.system_desc_checker.system_desc_checker import check_system_desc

    assert check_system_desc(str(path), "training", "0.6.0")[0]  # the official field check
    assert write_system_description(tree, "cpu", desc) == "unchanged"
    other_host = {**desc, "host_processor_model_name": "Some Other CPU"}
    with pytest.raises(UserError, match=r"already describes a different system \(host_processor_model_name: "
                                        r".* there, \"Some Other CPU\" here\); pass --system-name"):
        write_system_description(tree, "cpu", other_host)
    other_batch = json.loads(json.dumps(desc))
    other_batch["harness"]["global_batch_size"] = 2048
    with pytest.raises(UserError, match=r"harness\.global_batch_size: 98304 there, 2048 here"):
        write_system_description(tree, "cpu", other_batch)
    assert json.loads(path.read_text()) == desc  # never clobbered


def test_the_projects_own_profile_is_never_overwritten(tmp_path):
    # Root = a copy of the project: systems/<name>.json IS the profile, with "detect" fields.
    shutil.copytree(DEFAULT_SYSTEMS_DIR, tmp_path / "systems")
    before = (tmp_path / "systems" / "cpu.json").read_text()
    tree = ResultsTree(tmp_path)
    profile = load_profile("cpu", tmp_path / "systems")
    assert write_system_description(tree, "cpu", resolved_description(profile)) == "profile"
    assert (tmp_path / "systems" / "cpu.json").read_text() == before
    # The cpu profile's resolved description written under another profile's name: refused.
    with pytest.raises(UserError, match=r"Refusing to overwrite the system profile .*gpu-h100-x1\.json "
                                        r"\(its harness section differs"):
        write_system_description(tree, "gpu-h100-x1", resolved_description(profile))
    # A declared field that disagrees with the run: refused too.
    changed = resolved_description(profile)
    changed["cooling"] = "liquid"
    with pytest.raises(UserError, match=r"its cooling is 'unknown', this run's is 'liquid'"):
        write_system_description(tree, "cpu", changed)
    # --system-name gives the resolved description its own file.
    assert write_system_description(tree, "cpu-myhost", resolved_description(profile)) == "written"
    assert (tmp_path / "systems" / "cpu.json").read_text() == before
