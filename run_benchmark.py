#!/usr/bin/env python3
"""NCF (NeuMF) MLPerf-style training benchmark: command-line entry point.

Kept thin on purpose: everything lives in `harness/` so tests can drive the same code.
"""
from harness.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
