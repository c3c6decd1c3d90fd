"""Old-format (`:::MLPv0.5.0 ncf`) logs: the v0.5 requirements, today's deviations as warnings.

The published samples in ../shared must pass with their warnings (including the runs that did not
converge); small synthetic v0.5 logs break one v0.5 requirement each.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.compliance.checker import FAIL, PASS, PASS_WITH_WARNINGS, check_log, check_logs
from harness.results.log_parser import parse_log
from reference import constants

USERS = 138_493


def v05_lines(epochs: int = 3, success: bool = True) -> list[str]:
    """A v0.5 NCF log that also meets today's expectations (no deviation warnings)."""
    lines: list[str] = []
    clock = [1541731848.0]

    def tag(key: str, value=None) -> None:
        clock[0] += 0.5
        suffix = "" if value is None else ": " + json.dumps(value)
        lines.append(f":::MLPv0.5.0 ncf {clock[0]:.6f} (ncf.py:{len(lines) + 1}) {key}{suffix}")

    target = constants.MLPERF_TARGET_HR
    top = target + 0.004 if success else target - 0.004
    tag("run_clear_caches")
    tag("seed", 7)
    for key, value in [("preproc_hp_min_ratings", constants.MIN_RATINGS),
                       ("preproc_hp_num_eval", constants.NUM_EVAL_NEGATIVES),
                       ("preproc_hp_sample_eval_replacement", True), ("input_hp_sample_train_replacement", True)]:
        tag(key, value)
    tag("run_start")
    tag("input_step_eval_neg_gen")
    for key, value in [("input_batch_size", 1_048_576), ("model_hp_mf_dim", constants.MF_DIM),
                       ("model_hp_mlp_layer_sizes", list(constants.MLP_LAYERS)), ("opt_learning_rate", 0.0045),
                       ("opt_name", "Adam"), ("opt_hp_Adam_beta1", 0.25), ("opt_hp_Adam_beta2", 0.5),
                       ("opt_hp_Adam_epsilon", 1e-8), ("model_hp_loss_fn", constants.LOSS_FN)]:
        tag(key, value)
    tag("train_loop")
    for epoch in range(epochs):
        tag("train_epoch", epoch)
        tag("input_hp_num_neg", constants.NUM_NEG)
        tag("input_step_train_neg_gen")
        tag("eval_start")
        tag("eval_size", {"epoch": epoch, "value": USERS * constants.EVAL_ROW})
        tag("eval_hp_num_users", USERS)
        tag("eval_hp_num_neg", constants.NUM_EVAL_NEGATIVES)
        tag("eval_accuracy", {"epoch": epoch, "value": 0.4 + (top - 0.4) * (epoch + 1) / epochs})
        tag("eval_target", target)
        tag("eval_stop")
    tag("run_stop", {"success": success})
    tag("run_final")
    return lines


def _drop(lines: list[str], key: str, nth: int = 0) -> list[str]:
    hits = [i for i, line in enumerate(lines) if line.split(") ", 1)[1].split(":")[0] == key]
    return lines[: hits[nth]] + lines[hits[nth] + 1:]


def _replace(lines: list[str], old: str, new: str) -> list[str]:
    return [line.replace(old, new) for line in lines]


def _move(lines: list[str], key: str, before: str) -> list[str]:
    """Move the first `key` line right before the first `before` line, keeping timestamps sorted."""
    line = next(l for l in lines if f") {key}" in l)
    rest = [l for l in lines if l is not line]
    at = next(i for i, l in enumerate(rest) if f") {before}" in l)
    moved = rest[:at] + [line] + rest[at:]
    stamps = sorted(l.split()[2] for l in moved)
    return [" ".join(l.split(" ", 3)[:2] + [stamp] + [l.split(" ", 3)[3]]) for l, stamp in zip(moved, stamps)]


def _twice(lines: list[str], key: str) -> list[str]:
    at = next(i for i, l in enumerate(lines) if l.endswith(f") {key}"))
    return lines[: at + 1] + [lines[at]] + lines[at + 1:]


def _backwards(lines: list[str]) -> list[str]:
    at = next(i for i, l in enumerate(lines) if '"epoch": 1, "value"' in l and "eval_accuracy" in l)
    parts = lines[at].split(" ", 3)
    parts[2] = f"{float(parts[2]) - 100:.6f}"
    return lines[:at] + [" ".join(parts)] + lines[at + 1:]


CASES = {
    "compliant": (lambda: v05_lines(), PASS, None),
    "not_converged": (lambda: v05_lines(success=False), PASS, None),
    "missing_run_final": (lambda: _drop(v05_lines(), "run_final"), FAIL, "required tag run_final is missing"),
    "two_run_starts": (lambda: _twice(v05_lines(), "run_start"), FAIL,
                       "run_start must appear exactly once but appears 2 times"),
    "run_final_before_run_stop": (lambda: _move(v05_lines(), "run_final", "run_stop"), FAIL,
                                  "run_final comes before run_stop"),
    "epoch_without_eval": (lambda: _drop(v05_lines(), "eval_accuracy", 1), FAIL,
                           "epochs without an eval_accuracy: 1"),
    "eval_without_epoch": (lambda: _replace(v05_lines(), '{"epoch": 0, "value": ', "{\"value\": "), FAIL,
                           'eval_accuracy must be {"epoch": N, "value": HR}'),
    "success_without_target": (lambda: _replace(v05_lines(success=False), '"success": false', '"success": true'),
                               FAIL, "run_stop says success but no eval_accuracy reached eval_target"),
    "target_reached_not_success": (lambda: _replace(v05_lines(), '"success": true', '"success": false'),
                                   FAIL, "but run_stop says not successful"),
    "time_backwards": (lambda: _backwards(v05_lines()), FAIL, "time goes backwards (eval_accuracy"),
    "closed_wrong_num_neg": (lambda: _replace(v05_lines(), f"input_hp_num_neg: {constants.NUM_NEG}",
                                              "input_hp_num_neg: 3"), FAIL,
                             f"input_hp_num_neg must be {constants.NUM_NEG} in the closed division (got 3)"),
    "missing_tag": (lambda: [l for l in v05_lines() if ") eval_hp_num_neg" not in l], FAIL,
                    "required v0.5 tags missing: eval_hp_num_neg"),
    "epoch_skipped": (lambda: _replace(v05_lines(), "train_epoch: 2", "train_epoch: 3"), FAIL,
                      "train_epoch 3 should be 2"),
    "eval_size_not_all_users": (lambda: _replace(v05_lines(), f'"value": {USERS * constants.EVAL_ROW}', '"value": 5'),
                                FAIL, f"is not eval_hp_num_users x {constants.EVAL_ROW}"),
    "other_benchmark_line": (lambda: v05_lines()[:3] + [":::MLPv0.5.0 resnet 1541731849.6 (a.py:1) seed: 1"]
                             + v05_lines()[3:], FAIL, "lines of other benchmarks in an ncf log: resnet"),
    "cache_after_run_start": (lambda: _move(v05_lines(), "run_clear_caches", "input_step_eval_neg_gen"),
                              PASS_WITH_WARNINGS, "caches cleared after run_start"),
    "eval_neg_gen_before_run_start": (lambda: _move(v05_lines(), "input_step_eval_neg_gen", "run_start"),
                                      PASS_WITH_WARNINGS, "eval negatives generated before run_start"),
    "no_seed": (lambda: _drop(v05_lines(), "seed"), PASS_WITH_WARNINGS, "no seed logged"),
    "no_opt_name": (lambda: _drop(v05_lines(), "opt_name"), PASS_WITH_WARNINGS, "no opt_name logged"),
    "bare_hyperparameter": (lambda: _replace(v05_lines(), f"model_hp_mf_dim: {constants.MF_DIM}", "model_hp_mf_dim"),
                            PASS_WITH_WARNINGS, "hyperparameters logged without a value (required today): model_hp_mf_dim"),
}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    root = tmp_path_factory.mktemp("v05")
    system = root / "sys" / "ncf"
    system.mkdir(parents=True)
    (root / "sys" / "entry.json").write_text(json.dumps({"division": "closed"}))
    paths = {}
    for name, (build, _, _) in CASES.items():
        paths[name] = system / f"{name}.txt"
        paths[name].write_text("Beginning trial 1 of 100\n" + "\n".join(build()) + "\n")
    return dict(zip(paths, check_logs(list(paths.values()))))


@pytest.mark.parametrize("name", sorted(CASES))
def test_v05_requirement(verdicts, name):
    _, label, fragment = CASES[name]
    verdict = verdicts[name]
    assert verdict.format == "v0.5" and verdict.division == "closed"
    assert verdict.label == label, (verdict.failures, verdict.warnings)
    messages = verdict.failures if label == FAIL else verdict.warnings
    if label == PASS:
        assert verdict.warnings == []
    if fragment:
        assert any(fragment in m for m in messages), messages


def test_open_division_skips_the_reference_values(verdicts):
    log = Path(verdicts["closed_wrong_num_neg"].path)
    assert check_log(log, division="open").label == PASS


def test_division_comes_from_entry_json_or_defaults_to_closed(tmp_path):
    log = tmp_path / "sys" / "ncf" / "result_0.txt"
    log.parent.mkdir(parents=True)
    log.write_text("\n".join(v05_lines()) + "\n")
    alone = check_log(log)
    assert alone.division == "closed" and any("no v0.5 entry.json" in w for w in alone.warnings)
    (tmp_path / "sys" / "entry.json").write_text(json.dumps({"division": "open"}))
    described = check_log(log)
    assert described.division == "open" and described.label == PASS


def _published(shared_dir: Path) -> list[Path]:
    logs = sorted((shared_dir / "data" / "mlperf-v0.5-ncf").glob("*/ncf/result_*.txt"))
    assert logs, "no v0.5 samples in the shared folder"
    return logs


def test_published_v05_samples_pass_with_their_warnings(shared_dir):
    logs = _published(shared_dir)
    verdicts = check_logs(logs)
    converged = []
    for path, verdict in zip(logs, verdicts):
        assert verdict.format == "v0.5" and verdict.division == "closed"
        assert verdict.label == PASS_WITH_WARNINGS, (path, verdict.failures)
        warnings = " | ".join(verdict.warnings)
        if "dgx1" in path.parts[-3]:
            assert "eval negatives generated before run_start" in warnings and "no seed logged" in warnings
        if "skx8180" in path.parts[-3]:
            assert "caches cleared after run_start" in warnings and "no opt_name logged" in warnings
        converged.append(parse_log(path).first("run_stop").value["success"])
    # Runs that did not converge are compliant logs too: the sample holds both kinds.
    assert True in converged and False in converged
