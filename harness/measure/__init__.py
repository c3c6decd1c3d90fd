"""Measurement tooling: running the TF Model Garden peer and comparing measurements of it with ours."""
