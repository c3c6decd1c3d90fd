"""RunRecord from small hand-built ParsedLogs of both formats (no parser needed): statuses,
epochs numbered from 1, time to train, training rate, FLOPs and the problems that keep a run
out of the score."""
from __future__ import annotations

import pytest

from harness.results.run_record import forward_macs, run_record
from support.events import event, mllog_events, parsed


def test_mllog_success():
    rec = run_record(parsed("mllog", mllog_events([0.3, 0.5, 0.65])), "cpu-test")
    assert (rec.status, rec.converged, rec.problems) == ("success", True, [])
    assert rec.epochs_to_target == 3 and rec.best_hr == pytest.approx(0.65)
    assert [n for n, _, _ in rec.epochs] == [1, 2, 3]
    assert rec.time_to_train_s == pytest.approx(3 * 1.5 + 0.001)
    assert rec.examples_per_s == pytest.approx(5000 / 1.0)     # 5000 samples per 1 s of training
    assert (rec.division, rec.dataset, rec.seed, rec.target) == ("closed", "synthetic-small", 42, 0.6)
    macs = forward_macs()
    assert macs == 256 * 256 + 256 * 128 + 128 * 64 + (64 + 64)
    assert rec.estimated_flops == pytest.approx(3 * 2 * macs * (3 * 5000 + 200_000))


@pytest.mark.parametrize("reason,status,label", [
    ("max_epochs", "aborted", "aborted (max_epochs)"),
    ("interrupted", "interrupted", "interrupted"),
    ("error", "error", "error"),
])
def test_mllog_aborted_statuses(reason, status, label):
    rec = run_record(parsed("mllog", mllog_events([0.3, 0.4], status="aborted", abort_reason=reason)), "cpu-test")
    assert (rec.status, rec.status_text, rec.converged) == (status, label, False)
    assert rec.time_to_train_s is not None and rec.problems == []


def test_truncated_mllog_is_incomplete():
    rec = run_record(parsed("mllog", mllog_events([0.3, 0.4], stop=False)), "cpu-test")
    assert rec.status == "incomplete" and rec.time_to_train_s is None and not rec.converged
    assert "truncated" in rec.abort_reason


def test_success_without_reaching_the_target_is_a_problem():
    rec = run_record(parsed("mllog", mllog_events([0.3, 0.4])), "cpu-test")
    assert not rec.converged
    assert any("no eval_accuracy reached the target" in p for p in rec.problems)


def test_parse_errors_and_wrong_system_name_are_problems():
    rec = run_record(parsed("mllog", mllog_events([0.7]), errors=["line 3: bad json"]), "other-name")
    assert rec.problems[0] == "unparsed line: line 3: bad json"
    assert any("log names system 'cpu-test'" in p for p in rec.problems)


def v05_events(hrs, success=True, with_size=True):
    """A v0.5 log: epochs from 0, eval_accuracy {"epoch", "value"}, run_stop {"success"}."""
    t = 1_000_000.0
    events = [event("seed", 7, t), event("run_start", time_ms=t)]
    if with_size:
        events.append(event("input_size", 1000, t))
    events.append(event("model_hp_mlp_layer_sizes", "[256, 256, 128, 64]", t))
    for n, hr in enumerate(hrs):
        events += [event("train_epoch", n, t), event("input_hp_num_neg", 4, t)]
        t += 2000.0
        events += [event("eval_start", n, t), event("eval_size", {"epoch": n, "value": 138_493_000}, t)]
        t += 100.0
        events += [event("eval_accuracy", {"epoch": n, "value": hr}, t), event("eval_target", 0.635, t),
                   event("eval_stop", None, t)]
    events += [event("run_stop", {"success": success}, t + 5.0), event("run_final", None, t + 6.0)]
    return events


def test_v05_epochs_are_numbered_from_one():
    rec = run_record(parsed("v0.5", v05_events([0.5, 0.62, 0.64])), "dgx")
    assert [n for n, _, _ in rec.epochs] == [1, 2, 3]
    assert (rec.status, rec.epochs_to_target, rec.seed, rec.dataset) == ("success", 3, 7, "ml-20m")
    assert rec.time_to_train_s == pytest.approx((3 * 2100.0 + 5.0) / 1000.0)
    assert rec.examples_per_s == pytest.approx(1000 * 5 / 2.0)   # input_size x (1 + 4) per 2 s epoch
    assert rec.eval_samples == 138_493_000


def test_v05_failure_and_missing_sizes():
    rec = run_record(parsed("v0.5", v05_events([0.5, 0.6], success=False, with_size=False)), "skx")
    assert rec.status_text == "aborted (target not reached)" and not rec.converged
    assert rec.examples_per_s is None and rec.estimated_flops is None
    assert rec.problems == []
