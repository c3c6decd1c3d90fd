"""MLPerf result files without TensorFlow: the log writer, the log parser, run records and the results tree."""
