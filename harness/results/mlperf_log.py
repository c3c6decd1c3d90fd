"""The run's MLPerf log: `:::MLLOG` lines written through the official `mlperf_logging.mllog`.

One `RunLog` per result file. It wraps `mllog.MLLogger` around a private `logging.Logger` with
its own file handler (not mllog's process-wide default logger), so several runs in one process,
or tests, never write into each other's files. Non-chief workers get a disabled log: only the
chief writes the MLPerf log (tf.distribute runs one copy of this code per host).
"""
from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Any

from mlperf_logging.mllog import mllog as _mllog_impl
from harness.core.paths import REPO_ROOT

_ids = itertools.count()


class RunLog:
    """Append-only MLPerf log file; every line is flushed as it is written (a crash loses nothing)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self._logger = logging.getLogger(f"ncf_benchmark.mllog.{next(_ids)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._handler: logging.Handler | None = None
        if self.path is not None:
            self._handler = logging.FileHandler(self.path, mode="a", encoding="utf-8")
            self._handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger.addHandler(self._handler)
        else:
            self._logger.disabled = True
        root = str(REPO_ROOT / "harness")
        # stack offset 2: the reported file:line is the harness code that called event/start/end.
        self._mllogger = _mllog_impl.MLLogger(logger=self._logger, default_stack_offset=2, root_dir=root)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def event(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        self._mllogger.event(key=key, value=value, metadata=metadata)

    def start(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        self._mllogger.start(key=key, value=value, metadata=metadata)

    def end(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        self._mllogger.end(key=key, value=value, metadata=metadata)

    def close(self) -> None:
        if self._handler is not None:
            self._handler.flush()
            self._handler.close()
            self._logger.removeHandler(self._handler)
            self._handler = None
