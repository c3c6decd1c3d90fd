"""Runs the official mlperf-logging checker engine over several logs, one forked child per log.

Started by `harness.compliance.engine` as `python _engine_worker.py JOBS.json RESULTS.json` with the
working directory set to a temporary folder. It imports only the standard library and
`mlperf_logging`, never the harness, so it behaves the same wherever the package is installed.

Why a child per log: the engine keeps module-level state (its queue of enqueued configs) and an
exception half-way through a log would leave that queue dirty for the next one. Forking after the
import gives each log a pristine engine at the price of a fork, not of a new interpreter. Without
`os.fork` (Windows) the harness sends one log per worker instead.

Each result is the engine's own verdict and messages, read from the checker object after
`check_file` (not scraped from its log output), plus the file line number of every `:::MLLOG`
line, because the engine numbers lines by their position among `:::MLLOG` lines only.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback

TOKEN = ":::MLLOG "


def mllog_line_numbers(path: str) -> list[int]:
    """File line (1-based, '\\n'-separated) of the k-th line the engine's parser keeps.

    The engine reads the file in text mode (universal newlines: a lone '\\r' also ends a line)
    and keeps the lines that contain the token; this mirrors that enumeration."""
    numbers: list[int] = []
    with open(path, "rb") as handle:
        data = handle.read().decode("latin-1")
    for file_line, physical in enumerate(data.split("\n"), start=1):
        if physical.endswith("\r"):
            physical = physical[:-1]
        for piece in physical.split("\r"):
            if TOKEN in piece:
                numbers.append(file_line)
    return numbers


def use_libyaml() -> None:
    """Let the engine's `yaml.load(f, Loader=yaml.BaseLoader)` use libyaml's CBaseLoader.

    Same loader (BaseConstructor + BaseResolver: every scalar a string), C parser: reading the
    rulesets drops from ~0.3 s to ~0.02 s per log, which is most of the engine's time. A test
    checks that both loaders read our rulesets identically. Without libyaml nothing changes."""
    import yaml

    if getattr(yaml, "CBaseLoader", None) is not None:
        yaml.BaseLoader = yaml.CBaseLoader


def check_one(job: dict) -> dict:
    """Run the engine on one log in this process and report what it decided."""
    from mlperf_logging.compliance_checker import mlp_compliance

    checker = mlp_compliance.make_checker(job["usage"], job["ruleset"], False, False)
    configs = job["configs"]
    for config in configs[:-1]:
        mlp_compliance.enqueue_config(config)
    result: dict = {"crash": None, "valid": False, "messages": [], "warnings": []}
    try:
        result["valid"] = bool(checker.check_file(job["log"], configs[-1]))
    except Exception as exc:  # noqa: BLE001 - the engine crashing on a log is a verdict, not our crash
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        result["crash"] = f"{type(exc).__name__}: {exc} (in {os.path.basename(frame.filename)}:{frame.lineno})"
    result["messages"] = [{"key": key, "text": text} for key, text in checker.overwritable.items()]
    result["messages"] += [{"key": None, "text": text} for text in checker.not_overwritable]
    result["warnings"] = [{"key": key, "text": text} for key, text in checker.warnings.items()]
    try:
        result["mllog_lines"] = mllog_line_numbers(job["log"])
    except OSError:
        result["mllog_lines"] = []
    return result


def check_isolated(job: dict) -> dict:
    """check_one in a forked child; the parent only relays its JSON answer."""
    if not hasattr(os, "fork"):
        return check_one(job)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            payload = json.dumps(check_one(job))
        except BaseException as exc:  # noqa: BLE001 - report anything, then leave without cleanup
            payload = json.dumps({"crash": f"{type(exc).__name__}: {exc}", "valid": False,
                                  "messages": [], "warnings": [], "mllog_lines": []})
            code = 1
        with os.fdopen(write_fd, "w", encoding="utf-8") as pipe:
            pipe.write(payload)
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "r", encoding="utf-8") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        return {"crash": f"the checker process died (wait status {status})", "valid": False,
                "messages": [], "warnings": [], "mllog_lines": []}
    return json.loads(payload)


def main(argv: list[str]) -> int:
    jobs_path, results_path = argv
    with open(jobs_path, encoding="utf-8") as handle:
        jobs = json.load(handle)
    # The engine reports through the root logger; keep it off the console (the harness shows the
    # translated messages) and do not let logging fall back to stderr.
    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger().setLevel(logging.CRITICAL)
    use_libyaml()
    import mlperf_logging.compliance_checker.mlp_compliance  # noqa: F401 - import once, before forking

    results = [check_isolated(job) for job in jobs]
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
