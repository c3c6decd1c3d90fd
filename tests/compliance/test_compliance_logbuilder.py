"""The log builder of tests/support/logbuilder.py writes compliant logs: every broken-log test starts from one."""
from __future__ import annotations

from support.logbuilder import LogBuilder


def test_builder_logs_pass_closed_and_open(tmp_path):
    from harness.compliance.checker import check_logs

    logs = [LogBuilder(epochs=3).write(tmp_path / "closed.txt"),
            LogBuilder(epochs=2, division="open").write(tmp_path / "open.txt"),
            LogBuilder(epochs=4, reach_target=False).write(tmp_path / "not_converged.txt")]
    verdicts = check_logs(logs)
    for verdict in verdicts:
        assert verdict.passed, (verdict.path, verdict.failures)
        assert verdict.failures == [] and verdict.warnings == []
        assert verdict.format == "mllog"
    assert [v.division for v in verdicts] == ["closed", "open", "closed"]


def test_builder_follows_the_contract_order():
    keys = [e.key for e in LogBuilder(epochs=1).entries]
    assert keys[:7] == ["submission_benchmark", "submission_org", "submission_division", "submission_status",
                        "submission_platform", "cache_clear", "init_start"]
    assert keys.index("init_stop") < keys.index("run_start") < keys.index("epoch_start") < keys.index("run_stop")
    assert keys[-1] == "run_stop"
