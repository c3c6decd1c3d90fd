"""Reports over result logs: collecting runs, MLPerf scoring, tables and charts."""
