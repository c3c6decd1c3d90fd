"""MLPerf NCF compliance: our rulesets run by the official mlperf-logging checker engine, the v0.5
rules for the published 2018 logs, and the submission-tree checks behind `run_benchmark.py check`.

Public API: `check_log(path) -> Verdict` (what the runner calls after run_stop), `check_logs`
(many logs, one checker process), `check_paths` (files, result folders, submission roots).
"""
from harness.compliance.checker import Verdict, check_log, check_logs
from harness.compliance.tree import check_paths

__all__ = ["Verdict", "check_log", "check_logs", "check_paths"]
