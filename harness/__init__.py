"""The NCF benchmark harness: runs, times, logs, checks and reports NeuMF training."""

__version__ = "0.1.0"
