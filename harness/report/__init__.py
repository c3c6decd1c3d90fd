"""Reports over result logs: our submission roots beside published MLPerf v0.5 results.

The modules, in the order a report is made: `collect` (find the logs, judge them, read each into
a run), `scoring` (the MLPerf score of a set of runs), `ranking` (group runs into systems, score
and rank them: the `Report`), `tables` (the report as tables, CSV, markdown and JSON) and
`charts` (its two PNG charts).

Public API: `build_report(paths, ...) -> Report`, then `runs_table`, `systems_table`,
`write_outputs` and `report_json` on it.
"""
from harness.report.ranking import OURS, PUBLISHED, Report, build_report
from harness.report.tables import report_json, runs_table, systems_table, write_outputs

__all__ = ["OURS", "PUBLISHED", "Report", "build_report", "report_json", "runs_table", "systems_table",
           "write_outputs"]
