"""Drive the official mlperf-logging checker engine and put its findings in plain words.

The engine runs in a separate interpreter (`_engine_worker.py`) whose working directory is a
temporary folder, because it keeps module-level state and its tooling writes
compliance_checker.log into the current directory; the worker forks a child per log, so a batch
of logs costs one interpreter start. Its verdict counts as is: a log the engine rejects fails, whatever else the harness thinks.

The engine's messages are written for rule authors (the failing Python expression and a dump of
the state). Every CHECK in our rulesets ends in `# plain words`; `plain_message` turns an engine
message into "line N: <those words>", filling `{s[...]}` / `{v[...]}` from the dumped state.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.compliance.rules import ENGINE_RULESET, ENGINE_USAGE, resolve_rulesets
from harness.core.errors import UserError

WORKER = Path(__file__).resolve().parent / "_engine_worker.py"
WORKER_TIMEOUT_S = 600
ENGINE_PARSE_SUMMARY = "some :::MLLOG lines cannot be read by the official parser"


@dataclass
class EngineVerdict:
    """What the official engine said about one log."""

    valid: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    crash: str | None = None
    failed_keys: set[str] = field(default_factory=set)
    parse_errors: bool = False  # the engine found `:::MLLOG` lines it could not read


def run_engine(logs: list[tuple[str | Path, str | None]]) -> list[EngineVerdict]:
    """Check each (log path, forced division or None = follow the log) with the official engine."""
    if not logs:
        return []
    if importlib.util.find_spec("mlperf_logging") is None:
        raise UserError("the official checker is missing: install mlperf-logging (pip install mlperf-logging).")
    with tempfile.TemporaryDirectory(prefix="ncf-compliance-") as tmp:
        rulesets = resolve_rulesets(Path(tmp) / "rulesets")
        jobs = [{"log": str(Path(path).resolve()), "configs": rulesets.configs(division),
                 "usage": ENGINE_USAGE, "ruleset": ENGINE_RULESET} for path, division in logs]
        batches = [jobs] if hasattr(os, "fork") else [[job] for job in jobs]
        raw: list[dict] = []
        for number, batch in enumerate(batches):
            raw += _run_worker(batch, Path(tmp), number)
    return [_verdict(result) for result in raw]


def _run_worker(jobs: list[dict], tmp: Path, number: int) -> list[dict]:
    jobs_path, results_path = tmp / f"jobs_{number}.json", tmp / f"results_{number}.json"
    jobs_path.write_text(json.dumps(jobs), encoding="utf-8")
    workdir = tmp / "cwd"
    workdir.mkdir(exist_ok=True)
    try:
        proc = subprocess.run([sys.executable, str(WORKER), str(jobs_path), str(results_path)],
                              cwd=workdir, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
        problem = None if proc.returncode == 0 else _tail(proc.stderr) or f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        problem = f"no answer within {WORKER_TIMEOUT_S} s"
    if problem is None and results_path.is_file():
        return json.loads(results_path.read_text(encoding="utf-8"))
    crash = {"crash": f"the checker process failed: {problem or 'no results'}", "valid": False,
             "messages": [], "warnings": [], "mllog_lines": []}
    return [crash for _ in jobs]


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _verdict(result: dict) -> EngineVerdict:
    lines = result.get("mllog_lines") or []
    verdict = EngineVerdict(valid=bool(result.get("valid")) and not result.get("crash"), crash=result.get("crash"))
    for message in result.get("messages", []):
        text = message["text"]
        if text.startswith("Log lines had parsing errors"):
            verdict.parse_errors = True
        if message["key"]:
            verdict.failed_keys.add(message["key"])
        verdict.failures.append(plain_message(text, lines))
    for message in result.get("warnings", []):
        if message["key"] not in verdict.failed_keys:
            verdict.warnings.append(plain_message(message["text"], lines))
    if verdict.crash:
        verdict.failures.append(f"the official checker could not process this log ({verdict.crash})")
    return verdict


# ---------------------------------------------------------------- engine messages -> plain words
_LINE_CHECK = re.compile(r"CHECK for '(?P<key>[^']*)' failed in line (?P<n>\d+):\n(?P<line>.*?)\n"
                         r"failed test: (?P<test>.*?)\ncurrent context\[s\]=(?P<s>.*?)\ncurrent line\[v\]=(?P<v>.*)",
                         re.DOTALL)
_LINE_CRASH = re.compile(r"Failed executing CHECK code:\n(?P<test>.*?)\ntriggered by line:\n(?P<line>.*?)\n"
                         r"current context\[s\]=(?P<s>.*)", re.DOTALL)
_END_CHECK = re.compile(r"failed test: (?P<test>.*?)\ncurrent context\[s\]=(?P<s>.*)", re.DOTALL)
_END_CRASH = re.compile(r"Failed executing CHECK code:\n(?P<test>.*?)\ncurrent context\[s\]=(?P<s>.*)", re.DOTALL)
_CODE_CRASH = re.compile(r"Failed executing code (?P<action>\w+) code triggered by line :\n(?P<line>.*)", re.DOTALL)
_REQ = re.compile(r"Required (?P<req>EXACTLY_ONE|AT_LEAST_ONE|AT_LEAST\(\d+\)) occurrence of '(?P<key>[^']*)' "
                  r"but found (?P<n>\d+)(?P<rest>.*)", re.DOTALL)
_REQ_ONE_OF = re.compile(r"Required AT_LEAST_ONE occurrence of (?P<alts>.*)", re.DOTALL)
_ATLEAST_ONE_CHECK = re.compile(r"Failed checks for (?P<key>\S+) : (?P<test>.*)", re.DOTALL)
_FIELD = re.compile(r"\{([^{}]+)\}")


def _json_or_empty(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _words(test: str, state: dict, value: dict) -> str | None:
    """The `# plain words` of a CHECK, with {s[..]} / {v[..]} filled in ('?' where unavailable)."""
    if "#" not in test:
        return None
    words = test.split("#", 1)[1].strip()

    def fill(match: re.Match) -> str:
        try:
            return ("{" + match.group(1) + "}").format(s=state, v=value)
        except Exception:  # noqa: BLE001 - a missing field reads as '?', never breaks the report
            return "?"

    return _FIELD.sub(fill, words)


def _key_of(line: str) -> str:
    match = re.search(r'"key":\s*"([^"]*)"', line)
    return match.group(1) if match else "?"


def _file_line(engine_line: str, mllog_lines: list[int]) -> str:
    index = int(engine_line)
    return str(mllog_lines[index]) if 0 <= index < len(mllog_lines) else f"#{index + 1} of the :::MLLOG lines"


def plain_message(text: str, mllog_lines: list[int]) -> str:
    """One engine message in plain words (the engine's own text when it has an unknown shape)."""
    if m := _LINE_CHECK.fullmatch(text):
        where = f"line {_file_line(m['n'], mllog_lines)}"
        words = _words(m["test"], _json_or_empty(m["s"]), _json_or_empty(m["v"]))
        return f"{where}: {words or m['key'] + ' fails the rule ' + m['test'].strip()}"
    if m := _LINE_CRASH.fullmatch(text):
        words = _words(m["test"], _json_or_empty(m["s"]), {}) or f"the rule {m['test'].strip()}"
        return f"{_key_of(m['line'])}: {words} (its value could not be checked)"
    if m := _CODE_CRASH.fullmatch(text):
        return f"{_key_of(m['line'])}: the ruleset's {m['action']} code failed on this line (malformed value?)"
    if m := _END_CRASH.fullmatch(text):
        words = _words(m["test"], _json_or_empty(m["s"]), {}) or f"the rule {m['test'].strip()}"
        return f"{words} (could not be checked)"
    if m := _END_CHECK.fullmatch(text):
        return _words(m["test"], _json_or_empty(m["s"]), {}) or f"the log fails the rule {m['test'].strip()}"
    if m := _REQ.fullmatch(text):
        found, key = int(m["n"]), m["key"]
        if found == 0:
            return f"required key {key} is missing"
        if m["req"] == "EXACTLY_ONE":
            same = "" if m["rest"].strip() else " (same value each time)"
            return f"{key} must appear exactly once but appears {found} times{same}"
        return f"{key} must appear {m['req'].lower().replace('_', ' ')} times but appears {found} times"
    if m := _REQ_ONE_OF.fullmatch(text):
        return f"one of {m['alts']} is required"
    if m := _ATLEAST_ONE_CHECK.fullmatch(text):
        return _words(m["test"], {}, {}) or f"no {m['key']} line satisfies {m['test'].strip()}"
    if text.startswith("Log lines had parsing errors"):
        return ENGINE_PARSE_SUMMARY
    if text.startswith("No log lines detected"):
        return "no :::MLLOG lines found"
    if text.startswith("Could not find config file"):
        return f"internal error: {text}"
    return text.strip().splitlines()[0] if text.strip() else "the official checker failed the log"
