"""One broken `:::MLLOG` log per rule: each fails with the matching plain-words message.

Every case starts from `LogBuilder`'s compliant log and breaks exactly one thing. All logs are
judged in one `check_logs` call (one checker process, a forked child per log) to keep the suite
fast; each case then asserts on its own verdict.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from support.logbuilder import LogBuilder  # noqa: E402

from harness.compliance.checker import FAIL, PASS, PASS_WITH_WARNINGS, Verdict, check_logs  # noqa: E402
from reference import constants  # noqa: E402

POSITIVES = 19_861_770


def _shift_from(builder: LogBuilder, key: str, delta_ms: float) -> LogBuilder:
    """Move `key` and every later line `delta_ms` later (e.g. a slow init)."""
    at = builder.index(key)
    for entry in builder.entries[at:]:
        entry.time_ms += delta_ms
    return builder


def _status(builder: LogBuilder, status: str) -> LogBuilder:
    builder.get("run_stop").metadata = {"status": status}
    return builder


def _move_after(builder: LogBuilder, key: str, anchor: str) -> LogBuilder:
    entry = builder.entries.pop(builder.index(key))
    builder.entries.insert(builder.index(anchor) + 1, entry)
    builder.retime()
    return builder


def _interrupted_mid_epoch() -> LogBuilder:
    """Interrupted during epoch 3: no epoch_stop or eval for it, run_stop aborted (allowed)."""
    builder = LogBuilder(epochs=3, reach_target=False)
    del builder.entries[builder.index("epoch_stop", epoch=3):-1]
    builder.get("run_stop").metadata = {"status": "aborted", "abort_reason": "interrupted"}
    builder.retime()
    return builder


def _open_num_neg_3() -> LogBuilder:
    return LogBuilder(division="open").set("input_hp_num_neg", 3).set("train_samples", POSITIVES * 4)


def _open_synthetic() -> LogBuilder:
    builder = LogBuilder(division="open").set("dataset_name", "synthetic-small").set("eval_target", 0.5)
    return builder.set("dataset_verification", "synthetic").set("model_hp_mf_dim", 8)


def _garbage(path: Path) -> None:
    lines = LogBuilder().text().splitlines(keepends=True)
    junk = [":::MLLOG {not json at all\n", ":::MLLOG [1, 2, 3]\n", "random console noise\n",
            ":::MLLOG {\"key\": \"no_time\"}\n", "\x00\x01\x02 binary junk\n"]
    path.write_text("".join(lines[:10] + junk + lines[10:]), encoding="utf-8")


def _truncated(path: Path) -> None:
    text = LogBuilder(epochs=3).text()
    path.write_text(text[: int(len(text) * 0.6)], encoding="utf-8")


# name -> (how to write the log, expected verdict, expected message fragment or None)
BUILDERS: dict[str, Callable[[], LogBuilder]] = {
    "missing_key": lambda: LogBuilder().drop("dataset_sha256"),
    "missing_run_stop": lambda: LogBuilder().drop("run_stop"),
    "wrong_num_neg_closed": lambda: LogBuilder().set("input_hp_num_neg", 3).set("train_samples", POSITIVES * 4),
    "epoch_without_eval": lambda: LogBuilder(epochs=3).drop("eval_accuracy", epoch=2),
    "success_without_target": lambda: _status(LogBuilder(reach_target=False), "success"),
    "target_reached_but_aborted": lambda: _status(LogBuilder(reach_target=True), "aborted"),
    "init_over_limit": lambda: _shift_from(LogBuilder(), "init_stop", constants.MAX_INIT_SECONDS * 1000.0),
    "two_run_starts": lambda: LogBuilder().duplicate("run_start"),
    "two_run_stops": lambda: LogBuilder().duplicate("run_stop"),
    "time_backwards": lambda: _backwards(),
    "closed_unverified_data": lambda: LogBuilder().set("dataset_verification", "unverified"),
    "closed_wrong_target": lambda: LogBuilder().set("eval_target", 0.5),
    "closed_wrong_mf_dim": lambda: LogBuilder().set("model_hp_mf_dim", 32),
    "closed_wrong_layers": lambda: LogBuilder().set("model_hp_mlp_layer_sizes", [128, 64]),
    "closed_wrong_optimizer": lambda: LogBuilder().set("opt_name", "sgd"),
    "closed_match_mlperf_off": lambda: LogBuilder().set("eval_hp_match_mlperf", False),
    "epoch_numbering": lambda: _renumber(LogBuilder(epochs=3), 2, 3),
    "eval_without_epoch_num": lambda: _strip_epoch(LogBuilder(epochs=2), "eval_accuracy", 1),
    "eval_samples_wrong": lambda: LogBuilder().set("eval_samples", 138_493 * 100),
    "train_samples_not_multiple": lambda: LogBuilder().set("train_samples", POSITIVES * 5 + 1),
    "provenance_empty": lambda: LogBuilder().set("harness_git_commit", ""),
    "run_start_before_init_stop": lambda: _move_after(LogBuilder(), "init_stop", "run_start"),
    "wrong_benchmark": lambda: LogBuilder().set("submission_benchmark", "resnet"),
    "open_ml20m_lower_target": lambda: LogBuilder(division="open").set("eval_target", 0.6),
    "open_num_neg_3": _open_num_neg_3,
    "open_synthetic": _open_synthetic,
    "cache_not_cleared": lambda: LogBuilder().set("cache_clear", False),
    "interrupted_mid_epoch": _interrupted_mid_epoch,
    "not_converged": lambda: LogBuilder(epochs=4, reach_target=False),
}
WRITERS: dict[str, Callable[[Path], None]] = {
    "truncated": _truncated,
    "garbage_lines": _garbage,
    "empty": lambda path: path.write_bytes(b""),
    "console_only": lambda path: path.write_text("Epoch 1: HR@10 = 0.5\nno MLPerf lines here\n"),
}


def _backwards() -> LogBuilder:
    builder = LogBuilder(epochs=3)
    builder.get("eval_accuracy", epoch=2).time_ms = builder.get("epoch_start", epoch=2).time_ms - 5000.0
    return builder


def _renumber(builder: LogBuilder, epoch: int, new: int) -> LogBuilder:
    for entry in builder.entries:
        if entry.metadata.get("epoch_num") == epoch:
            entry.metadata["epoch_num"] = new
    return builder


def _strip_epoch(builder: LogBuilder, key: str, epoch: int) -> LogBuilder:
    builder.get(key, epoch).metadata.pop("epoch_num")
    return builder


C = constants
EXPECTED: dict[str, tuple[str, str | None]] = {
    "missing_key": (FAIL, "required key dataset_sha256 is missing"),
    "missing_run_stop": (FAIL, "required key run_stop is missing"),
    "wrong_num_neg_closed": (FAIL, f"input_hp_num_neg must be {C.NUM_NEG} in the closed division (got 3)"),
    "epoch_without_eval": (FAIL, "epochs without an eval_accuracy: [2]"),
    "success_without_target": (FAIL, "run_stop says success but no eval_accuracy reached eval_target"),
    "target_reached_but_aborted": (FAIL, "but run_stop says aborted"),
    "init_over_limit": (FAIL, f"it must stay under {C.MAX_INIT_SECONDS} s"),
    "two_run_starts": (FAIL, "run_start appears more than once"),
    "two_run_stops": (FAIL, "run_stop appears more than once"),
    "time_backwards": (FAIL, "time goes backwards (eval_accuracy"),
    "closed_unverified_data": (FAIL, "the closed division needs the verified dataset (dataset_verification 'unverified')"),
    "closed_wrong_target": (FAIL, f"eval_target must be {C.MLPERF_TARGET_HR} in the closed division (got 0.5)"),
    "closed_wrong_mf_dim": (FAIL, f"model_hp_mf_dim must be {C.MF_DIM} in the closed division (got 32)"),
    "closed_wrong_layers": (FAIL, "model_hp_mlp_layer_sizes must be"),
    "closed_wrong_optimizer": (FAIL, "(opt_name 'sgd')"),
    "closed_match_mlperf_off": (FAIL, "eval_hp_match_mlperf must be true"),
    "epoch_numbering": (FAIL, "epochs must be numbered 1, 2, 3, ... in order: expected epoch_num 2, got 3"),
    "eval_without_epoch_num": (FAIL, "eval_accuracy must carry metadata epoch_num"),
    "eval_samples_wrong": (FAIL, f"must be eval_hp_num_users x {C.EVAL_ROW} = {138_493 * C.EVAL_ROW}"),
    "train_samples_not_multiple": (FAIL, f"is not a multiple of 1 + input_hp_num_neg = {1 + C.NUM_NEG}"),
    "provenance_empty": (FAIL, "harness_git_commit must be a non-empty string"),
    "run_start_before_init_stop": (FAIL, "run_start must come after init_stop"),
    "wrong_benchmark": (FAIL, f"submission_benchmark must be '{C.BENCHMARK}' (got 'resnet')"),
    "open_ml20m_lower_target": (FAIL, f"the open division keeps the quality target {C.MLPERF_TARGET_HR}"),
    "open_num_neg_3": (PASS, None),
    "open_synthetic": (PASS, None),
    "cache_not_cleared": (PASS_WITH_WARNINGS, "cache_clear is false"),
    "interrupted_mid_epoch": (PASS, None),
    "not_converged": (PASS, None),
    "truncated": (FAIL, "truncated log?"),
    "garbage_lines": (FAIL, "not valid JSON after :::MLLOG"),
    "empty": (FAIL, "the file is empty"),
    "console_only": (FAIL, "no MLPerf log lines"),
}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> dict[str, Verdict]:
    folder = tmp_path_factory.mktemp("broken_logs")
    paths = {}
    for name, build in BUILDERS.items():
        paths[name] = build().write(folder / f"{name}.txt")
    for name, write in WRITERS.items():
        paths[name] = folder / f"{name}.txt"
        write(paths[name])
    results = check_logs(list(paths.values()))
    return dict(zip(paths, results))


def test_every_case_has_an_expectation():
    assert set(EXPECTED) == set(BUILDERS) | set(WRITERS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_log_fails_with_its_message(verdicts, name):
    verdict = verdicts[name]
    label, fragment = EXPECTED[name]
    messages = verdict.failures if label == FAIL else verdict.warnings
    assert verdict.label == label, (verdict.failures, verdict.warnings)
    if label == PASS:
        assert verdict.failures == [] and verdict.warnings == []
    if fragment is not None:
        assert any(fragment in m for m in messages), messages


def test_failures_name_the_file_line(verdicts):
    # The engine numbers lines among :::MLLOG lines only; the report must use file line numbers.
    garbage = verdicts["garbage_lines"]
    assert any(m.startswith("unreadable log line: line 11:") for m in garbage.failures), garbage.failures
    numbering = verdicts["epoch_numbering"]
    text = Path(numbering.path).read_text().splitlines()
    line = next(m for m in numbering.failures if "epochs must be numbered" in m).split(":")[0]
    assert '"epoch_start"' in text[int(line.removeprefix("line ")) - 1]


def test_garbage_that_breaks_the_official_parser_is_reported_not_raised(verdicts):
    # `{"key": "no_time"}` is valid JSON without time_ms: the official parser raises on it.
    failures = verdicts["garbage_lines"].failures
    assert any("official checker could not process this log" in m for m in failures), failures


def test_truncated_log_also_misses_run_stop(verdicts):
    assert any("required key run_stop is missing" in m for m in verdicts["truncated"].failures)


def test_forced_division_applies_its_rules(tmp_path):
    log = _open_num_neg_3().write(tmp_path / "open.txt")
    forced = check_logs([log], division="closed")[0]
    assert not forced.passed and forced.division == "closed"
    assert any(f"input_hp_num_neg must be {C.NUM_NEG}" in m for m in forced.failures)
    assert any("declares division 'open'" in m for m in forced.warnings)
