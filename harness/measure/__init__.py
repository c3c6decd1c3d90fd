"""The measuring commands' libraries (throughput, time to target, calibration), running the TF Model
Garden peer, and comparing measurements of it with ours."""
