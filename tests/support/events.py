"""MLPerf log events for tests: read from a written log, or built by hand as a parser would give them.

Why here: the run-record, report, end-to-end and multi-worker tests all need one of the two, and
two copies of the same reader had grown in separate test modules.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace


def read_events(path: Path) -> list[dict]:
    """The JSON payload of every `:::MLLOG` line of the log at `path`, in order."""
    return [json.loads(line.split(":::MLLOG", 1)[1]) for line in path.read_text().splitlines()
            if line.startswith(":::MLLOG")]


def event(key, value=None, time_ms=0.0, line_no=0, **metadata):
    return SimpleNamespace(key=key, value=value, time_ms=float(time_ms), event_type="POINT_IN_TIME",
                           metadata=metadata, line_no=line_no)


def parsed(fmt, events, errors=()):
    return SimpleNamespace(path="/x/result_0.txt", format=fmt, events=list(events), errors=list(errors))


def mllog_events(hrs, status="success", abort_reason=None, target=0.6, stop=True, epoch_ms=1000.0,
                 eval_ms=500.0, train_samples=5000, start_ms=10_000.0, system="cpu-test", seed=42):
    """Our log: run_start at `start_ms`, each epoch trains `epoch_ms`, evaluates `eval_ms`."""
    t = start_ms
    events = [event("submission_division", "closed"), event("dataset_name", "synthetic-small"),
              event("seed", seed), event("eval_target", target), event("train_samples", train_samples),
              event("eval_samples", 200_000), event("system_name", system), event("run_start", time_ms=t)]
    for k, hr in enumerate(hrs, start=1):
        events.append(event("epoch_start", time_ms=t, epoch_num=k))
        t += epoch_ms
        events.append(event("epoch_stop", time_ms=t, epoch_num=k))
        t += eval_ms
        events.append(event("eval_accuracy", hr, time_ms=t, epoch_num=k))
    if stop:
        meta = {"status": status} | ({"abort_reason": abort_reason} if abort_reason else {})
        events.append(event("run_stop", time_ms=t + 1.0, **meta))
    return events
