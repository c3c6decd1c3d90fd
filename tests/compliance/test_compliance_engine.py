"""The rulesets as the official engine reads them, and the engine's messages in plain words."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from support.logbuilder import LogBuilder  # noqa: E402

from harness.compliance import engine  # noqa: E402
from harness.compliance.engine import plain_message, run_engine  # noqa: E402
from harness.compliance.rules import TEMPLATE_DIR, constant_values, fill_template, resolve_rulesets  # noqa: E402
from reference import constants  # noqa: E402


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    return resolve_rulesets(tmp_path_factory.mktemp("rulesets"))


def _records(path: Path) -> list[dict]:
    return yaml.load(path.read_text(), Loader=yaml.BaseLoader)


def test_resolved_rulesets_are_complete_yaml_with_absolute_paths(resolved):
    files = sorted(resolved.folder.glob("*.yaml"))
    assert {f.name for f in files} == {"common.yaml", "common_fixed_division.yaml", "closed_ncf.yaml", "open_ncf.yaml"}
    for path in files:
        code = "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#"))
        assert not re.search(r"@[A-Z0-9_]+@", code), path
        assert isinstance(_records(path), list)
    assert all(Path(c).is_absolute() for c in resolved.configs(None) + resolved.configs("closed"))
    post = next(r["KEY"]["POST"] for r in _records(resolved.common_following_log)
                if "KEY" in r and r["KEY"]["NAME"] == "submission_division")
    assert repr(str(resolved.folder)) in post and Path(resolved.folder).is_absolute()
    fixed = next(r["KEY"]["POST"] for r in _records(resolved.common_only)
                 if "KEY" in r and r["KEY"]["NAME"] == "submission_division")
    assert "if False and" in fixed


def test_templates_take_their_numbers_from_reference_constants():
    # The closed values must come from placeholders, never literals in the YAML code.
    literals = [repr(v) for k, v in constant_values().items() if isinstance(v, (int, float, list)) and k != "MAX_INIT_MS"]
    literals += ["1200", "0.635", "[256"]
    for template in TEMPLATE_DIR.glob("*.yaml"):
        code = "\n".join(l for l in template.read_text().splitlines() if not l.lstrip().startswith("#"))
        code = code.replace("len(v['value']) == 64", "")  # a SHA-256 hex digest's length, not MF_DIM
        for literal in literals:
            assert not re.search(rf"(?<![\w.@]){re.escape(literal)}(?![\w.])", code), (template.name, literal)
    resolved = fill_template("x == @NUM_NEG@ and y == @MLP_LAYERS@", constant_values())
    assert resolved == f"x == {constants.NUM_NEG} and y == {list(constants.MLP_LAYERS)!r}"
    with pytest.raises(KeyError):
        fill_template("@NOT_A_CONSTANT@", constant_values())


def test_libyaml_reads_the_rulesets_like_the_pure_python_loader(resolved):
    if getattr(yaml, "CBaseLoader", None) is None:
        pytest.skip("PyYAML without libyaml: the worker keeps the pure-Python loader")
    for path in resolved.folder.glob("*.yaml"):
        text = path.read_text()
        assert yaml.load(text, Loader=yaml.CBaseLoader) == yaml.load(text, Loader=yaml.BaseLoader)


def test_every_check_has_plain_words():
    for template in TEMPLATE_DIR.glob("*.yaml"):
        for record in yaml.load(template.read_text(), Loader=yaml.BaseLoader):
            body = record.get("KEY") or record.get("END") or {}
            checks = body.get("CHECK", [])
            for check in [checks] if isinstance(checks, str) else checks:
                assert "  # " in check, (template.name, check)


def _state(**values) -> str:
    return json.dumps(values, indent=2)


@pytest.mark.parametrize("message, expected", [
    ("Required EXACTLY_ONE occurrence of 'seed' but found 0", "required key seed is missing"),
    ("Required AT_LEAST_ONE occurrence of 'eval_accuracy' but found 0", "required key eval_accuracy is missing"),
    ("Required EXACTLY_ONE occurrence of 'seed' but found 2", "seed must appear exactly once but appears 2 times (same value each time)"),
    ("Required EXACTLY_ONE occurrence of 'seed' but found 2 with different values: [1, 2]",
     "seed must appear exactly once but appears 2 times"),
    ("Required AT_LEAST_ONE occurrence of 'block_start' or 'epoch_start'", "one of 'block_start' or 'epoch_start' is required"),
    ("Log lines had parsing errors.", engine.ENGINE_PARSE_SUMMARY),
    ("No log lines detected", "no :::MLLOG lines found"),
    ("CHECK for 'input_hp_num_neg' failed in line 2:\n:::MLLOG {}\nfailed test: v['value'] == 4  # num_neg must be 4 (got {v[value]!r})"
     f"\ncurrent context[s]={_state(a=1)}\ncurrent line[v]={_state(value=3, metadata={})}",
     "line 12: num_neg must be 4 (got 3)"),
    ("CHECK for 'x' failed in line 0:\n:::MLLOG {}\nfailed test: s['a'] == 2  # a is {s[a]}, b is {s[b]}"
     f"\ncurrent context[s]={_state(a=1)}\ncurrent line[v]={_state(value=None)}",
     "line 10: a is 1, b is ?"),
    ("CHECK for 'x' failed in line 0:\n:::MLLOG {}\nfailed test: s['a'] == 2"
     f"\ncurrent context[s]={_state(a=1)}\ncurrent line[v]={_state(value=None)}",
     "line 10: x fails the rule s['a'] == 2"),
    (f"failed test: s['best'] >= 0.6  # best {{s[best]}} below target\ncurrent context[s]={_state(best=0.5)}",
     "best 0.5 below target"),
    ("Failed executing CHECK code:\nv['value'] > 0  # must be positive\ntriggered by line:\n"
     ':::MLLOG {"key": "seed", "value": "x"}\ncurrent context[s]={}', "seed: must be positive (its value could not be checked)"),
    ("something new from the engine\nwith details", "something new from the engine"),
])
def test_plain_message(message, expected):
    assert plain_message(message, mllog_lines=[10, 11, 12]) == expected


def test_engine_process_failure_is_a_failing_verdict(tmp_path, monkeypatch):
    log = LogBuilder().write(tmp_path / "log.txt")
    monkeypatch.setattr(engine, "WORKER", tmp_path / "no_such_worker.py")
    (said,) = run_engine([(log, None)])
    assert not said.valid and said.failures and "the checker process failed" in said.failures[0]
    assert run_engine([]) == []
