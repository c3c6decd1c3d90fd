"""Judge old-format (`:::MLPv0.5.0 ncf`) logs by the v0.5 requirements, with today's deviations.

The official checker cannot read these lines, so the published 2018 results need rules of our own.
They are judged by what the v0.5 `mlperf_compliance` checker required of NCF - run_start, run_stop
and run_final once each and in that order, an eval_accuracy {"epoch", "value"} for every epoch,
the NCF hyperparameter tags present - plus the consistency any time-to-train needs (`success`
agrees with the logged target, eval covers all users) and, in the closed division, the reference
values. Unreadable lines and time going backwards are checked by the caller, as for any log. What today's rules would reject but v0.5 allowed (eval negatives generated before
run_start, no seed, caches cleared after run_start, no opt_name, ...) is a warning: the log was
compliant when it was submitted, and a reader comparing it with today's runs should know.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.results import keys
from harness.results.log_parser import LogEvent, ParsedLog
from reference import constants

BENCHMARK_ORDER = (keys.RUN_START, keys.RUN_STOP, keys.V05_RUN_FINAL)
# v0.5 NCF tags that both published submitters (NVIDIA PyTorch, Intel BigDL) emit: the tags the
# v0.5 checker's NCF tag list asked for that the accepted results actually carried.
REQUIRED_TAGS = (
    keys.V05_RUN_CLEAR_CACHES, keys.PREPROC_HP_NUM_EVAL, keys.PREPROC_HP_SAMPLE_EVAL_REPLACEMENT,
    keys.INPUT_HP_NUM_NEG, keys.INPUT_HP_SAMPLE_TRAIN_REPLACEMENT, keys.V05_INPUT_STEP_TRAIN_NEG_GEN,
    keys.V05_INPUT_STEP_EVAL_NEG_GEN, keys.V05_OPT_LEARNING_RATE, keys.V05_TRAIN_LOOP, keys.V05_TRAIN_EPOCH, keys.EVAL_START,
    keys.V05_EVAL_SIZE, keys.EVAL_TARGET, keys.EVAL_ACCURACY, keys.EVAL_STOP, keys.EVAL_HP_NUM_USERS, keys.EVAL_HP_NUM_NEG,
    keys.MODEL_HP_LOSS_FN, keys.MODEL_HP_MF_DIM, keys.MODEL_HP_MLP_LAYER_SIZES,
)
# Hyperparameter tags whose value today's rules need (a bare tag says only where the code is).
VALUED_PREFIXES = keys.V05_HYPERPARAMETER_PREFIXES
# The closed-division reference values, as v0.5 logged them.
CLOSED_VALUES = {
    keys.INPUT_HP_NUM_NEG: constants.NUM_NEG,
    keys.PREPROC_HP_NUM_EVAL: constants.NUM_EVAL_NEGATIVES,
    keys.EVAL_HP_NUM_NEG: constants.NUM_EVAL_NEGATIVES,
    keys.PREPROC_HP_MIN_RATINGS: constants.MIN_RATINGS,
    keys.MODEL_HP_MF_DIM: constants.MF_DIM,
    keys.MODEL_HP_MLP_LAYER_SIZES: list(constants.MLP_LAYERS),
    keys.MODEL_HP_LOSS_FN: constants.LOSS_FN,
    keys.EVAL_TARGET: constants.MLPERF_TARGET_HR,
}
MAX_LISTED = 5


def entry_division(log_path: str | Path) -> str | None:
    """The division in the v0.5 system description `<system>/entry.json` beside `<system>/ncf/`."""
    entry = Path(log_path).resolve().parent.parent / "entry.json"
    try:
        division = json.loads(entry.read_text(encoding="utf-8")).get("division")
    except (OSError, ValueError, AttributeError):
        return None
    return division if division in ("closed", "open") else None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _decoded(value: Any) -> Any:
    """Intel logged some lists as JSON text ("[256, 256, 128, 64]"); read them as values."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _run_order(events: list[LogEvent], failures: list[str]) -> dict[str, LogEvent]:
    """run_start, run_stop, run_final: once each, in that order. Returns the ones present."""
    found: dict[str, LogEvent] = {}
    for key in BENCHMARK_ORDER:
        lines = [e for e in events if e.key == key]
        if not lines:
            failures.append(f"required tag {key} is missing")
        elif len(lines) > 1:
            failures.append(f"{key} must appear exactly once but appears {len(lines)} times "
                            f"(lines {_listed([str(e.line_no) for e in lines])})")
        if lines:
            found[key] = lines[0]
    present = [found[k] for k in BENCHMARK_ORDER if k in found]
    for before, after in zip(present, present[1:]):
        if after.line_no < before.line_no:
            failures.append(f"line {after.line_no}: {after.key} comes before {before.key} (line {before.line_no})")
    return found


def _epochs(events: list[LogEvent], run: dict[str, LogEvent], failures: list[str]) -> list[float]:
    """Every train_epoch N (numbered 0, 1, 2, ...) has an eval_accuracy {"epoch": N, "value": HR}
    inside run_start..run_stop. Returns the accepted hit rates."""
    epochs = [e for e in events if e.key == keys.V05_TRAIN_EPOCH]
    numbers = [e.value if isinstance(e.value, int) and not isinstance(e.value, bool) else None for e in epochs]
    for expected, (event, number) in enumerate(zip(epochs, numbers)):
        if number != expected:
            failures.append(f"line {event.line_no}: train_epoch {event.value!r} should be {expected} "
                            "(v0.5 epochs are numbered 0, 1, 2, ... in order)")
            break
    start, stop = run.get(keys.RUN_START), run.get(keys.RUN_STOP)
    evaluated: dict[int, float] = {}
    for event in (e for e in events if e.key == keys.EVAL_ACCURACY):
        value = event.value if isinstance(event.value, dict) else {}
        epoch, hit_rate = value.get("epoch"), _number(value.get("value"))
        if not isinstance(epoch, int) or isinstance(epoch, bool) or hit_rate is None:
            failures.append(f"line {event.line_no}: eval_accuracy must be {{\"epoch\": N, \"value\": HR}} "
                            f"(got {event.value!r})")
            continue
        if (start and event.line_no < start.line_no) or (stop and event.line_no > stop.line_no):
            failures.append(f"line {event.line_no}: eval_accuracy outside run_start .. run_stop does not count")
            continue
        evaluated[epoch] = max(hit_rate, evaluated.get(epoch, hit_rate))
    missing = [str(n) for n in numbers if n is not None and n not in evaluated]
    if missing:
        failures.append(f"epochs without an eval_accuracy: {_listed(missing)} (every epoch must be evaluated)")
    return list(evaluated.values())


def _success(events: list[LogEvent], run: dict[str, LogEvent], hit_rates: list[float],
             failures: list[str]) -> None:
    """run_stop {"success": bool} must agree with the target: success iff some eval reached it."""
    stop = run.get(keys.RUN_STOP)
    targets = {_number(e.value) for e in events if e.key == keys.EVAL_TARGET}
    if None in targets or len(targets) > 1:
        failures.append(f"eval_target must be one number throughout the log (got {_listed(sorted(map(str, targets)))})")
        return
    if stop is None:
        return
    success = stop.value.get("success") if isinstance(stop.value, dict) else None
    if not isinstance(success, bool):
        failures.append(f"line {stop.line_no}: run_stop must be {{\"success\": true|false}} (got {stop.value!r})")
        return
    if not targets:
        return
    target = targets.pop()
    best = max(hit_rates, default=None)
    reached = best is not None and best >= target
    if success and not reached:
        failures.append(f"run_stop says success but no eval_accuracy reached eval_target {target} (best {best})")
    if not success and reached:
        failures.append(f"eval_accuracy reached eval_target {target} (best {best}) but run_stop says not successful")


def _eval_size(events: list[LogEvent], failures: list[str]) -> None:
    """eval_size must cover all users: eval_hp_num_users x (1 true + 999 negatives)."""
    users = None
    for event in events:
        if event.key == keys.EVAL_HP_NUM_USERS and isinstance(event.value, int):
            users = event.value
        if event.key != keys.V05_EVAL_SIZE:
            continue
        size = event.value.get("value") if isinstance(event.value, dict) else event.value
        if users is not None and isinstance(size, int) and size != users * constants.EVAL_ROW:
            failures.append(f"line {event.line_no}: eval_size {size} is not eval_hp_num_users x "
                            f"{constants.EVAL_ROW} = {users * constants.EVAL_ROW}")
            return


def _closed_values(events: list[LogEvent], failures: list[str]) -> None:
    """The reference values, reported once per tag (v0.5 logs repeat some tags every epoch)."""
    reported: set[str] = set()
    for event in events:
        if event.key in CLOSED_VALUES and event.value is not None and event.key not in reported:
            expected = CLOSED_VALUES[event.key]
            if _decoded(event.value) != expected:
                reported.add(event.key)
                failures.append(f"line {event.line_no}: {event.key} must be {expected!r} in the closed "
                                f"division (got {event.value!r})")
    names = [(e, e.value) for e in events if e.key == keys.OPT_NAME]
    names += [(e, e.value.get("name")) for e in events if e.key == "create_optim_method" and isinstance(e.value, dict)]
    for event, name in names:
        if isinstance(name, str) and name.lower() not in constants.CLOSED_OPTIMIZERS:
            failures.append(f"line {event.line_no}: the closed division trains with "
                            f"{' or '.join(constants.CLOSED_OPTIMIZERS)} (optimizer {name!r})")


def _deviations(events: list[LogEvent], run: dict[str, LogEvent]) -> list[str]:
    """What today's rules would reject but v0.5 accepted: warnings, never failures."""
    warnings: list[str] = []
    logged = {e.key for e in events}
    start = run.get(keys.RUN_START)
    if start is not None:
        early = [e for e in events if e.key == keys.V05_INPUT_STEP_EVAL_NEG_GEN and e.line_no < start.line_no]
        if early:
            warnings.append(f"eval negatives generated before run_start (line {early[0].line_no}); "
                            "today that work is timed")
        late = [e for e in events if e.key == keys.V05_RUN_CLEAR_CACHES and e.line_no > start.line_no]
        if late:
            warnings.append(f"caches cleared after run_start (line {late[0].line_no}); today cache_clear "
                            "comes before init_start")
    if not logged & {keys.SEED, keys.V05_RUN_SET_RANDOM_SEED}:
        warnings.append("no seed logged (required today)")
    if keys.OPT_NAME not in logged:
        named = "; the optimizer is named only in create_optim_method" if "create_optim_method" in logged else ""
        warnings.append(f"no opt_name logged (required today){named}")
    if keys.V05_INPUT_BATCH_SIZE not in logged:
        warnings.append("no batch size logged (global_batch_size is required today)")
    if keys.PREPROC_HP_MIN_RATINGS not in logged:
        warnings.append("no preproc_hp_min_ratings logged (required today)")
    bare = sorted({e.key for e in events if e.value is None and e.key.startswith(VALUED_PREFIXES)})
    if bare:
        warnings.append(f"hyperparameters logged without a value (required today): {_listed(bare)}")
    return warnings


def check_v05(parsed: ParsedLog, division: str | None) -> tuple[list[str], list[str]]:
    """(failures, warnings) of a v0.5 log; `division` "closed" adds the reference values.

    Unreadable lines and time order are the caller's (the same for both formats)."""
    failures: list[str] = []
    events = parsed.events
    others = sorted({e.metadata.get("benchmark") for e in events} - {constants.BENCHMARK})
    if others:
        failures.append(f"lines of other benchmarks in an {constants.BENCHMARK} log: {_listed(others)}")
    run = _run_order(events, failures)
    logged = {e.key for e in events}
    missing = [tag for tag in REQUIRED_TAGS if tag not in logged]
    if missing:
        failures.append(f"required v0.5 tags missing: {_listed(missing)}")
    hit_rates = _epochs(events, run, failures)
    _success(events, run, hit_rates, failures)
    _eval_size(events, failures)
    if division == "closed":
        _closed_values(events, failures)
    return failures, _deviations(events, run)
