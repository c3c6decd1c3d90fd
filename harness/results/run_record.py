"""One run, read from its MLPerf log in either format, as the facts a report needs.

The report, the scorer and the charts must not care whether a run was logged by us
(`:::MLLOG`, epochs from 1, run_stop status + abort_reason) or published in MLPerf v0.5
(`:::MLPv0.5.0`, epochs from 0, run_stop {"success": bool}). `run_record` turns a
`harness.results.log_parser.ParsedLog` of either kind into one `RunRecord` with epochs numbered from 1,
so v0.5 runs read like ours. It never raises on bad content: what is wrong with a log is kept
in `problems`, and a log without run_stop is `incomplete`, so nothing is silently counted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from harness.results import keys
from reference.constants import MF_DIM, MLP_LAYERS, MLPERF_TARGET_HR, NUM_NEG

STATUSES = ("success", "aborted", "interrupted", "error", "incomplete")

# MLPerf v0.5 defined NCF on ml-20m only; its logs do not name the dataset or the target in every run.
V05_DATASET = "ml-20m"


@dataclass
class RunRecord:
    """One run, from either log format, epochs numbered from 1."""

    path: str
    system: str
    format: str                          # "mllog" | "v0.5" | "unknown"
    division: str | None
    dataset: str | None
    seed: int | None
    status: str                          # one of STATUSES
    abort_reason: str | None
    target: float | None
    run_start_ms: float | None
    run_stop_ms: float | None
    time_to_train_s: float | None        # run_stop - run_start; None without both
    epochs: list[tuple[int, float, float]] = field(default_factory=list)  # (epoch from 1, HR@10, eval time_ms)
    best_hr: float | None = None
    epochs_to_target: int | None = None  # first epoch whose HR@10 reached the target
    train_samples: int | None = None     # training examples per epoch (positives x (1 + num_neg))
    eval_samples: int | None = None      # scored pairs per full evaluation (users x 1000)
    train_seconds: float | None = None   # summed per-epoch training time (no eval)
    examples_per_s: float | None = None  # mean training examples/s over the timed epochs
    forward_macs: int = 0                # multiply-adds of one forward pass of the model
    problems: list[str] = field(default_factory=list)  # why the log cannot be trusted as written

    @property
    def converged(self) -> bool:
        """A run counts as converged only if it says so and an eval really reached the target."""
        return self.status == "success" and self.epochs_to_target is not None

    @property
    def status_text(self) -> str:
        """`aborted (max_epochs)` style label for tables."""
        if self.abort_reason and self.status == "aborted":
            return f"aborted ({self.abort_reason})"
        return self.status

    @property
    def estimated_flops(self) -> float | None:
        """Model FLOPs the run performed: per epoch, training (forward + backward = 3 x forward) on
        train_samples plus one full evaluation (forward) on eval_samples; 2 FLOPs per multiply-add.
        On ml-20m this gives docs/reference-facts.md §4's ~63.5 TFLOP per training epoch and ~29.5 TFLOP per eval."""
        if not self.epochs or self.train_samples is None or self.eval_samples is None:
            return None
        per_epoch = 2 * self.forward_macs * (3 * self.train_samples + self.eval_samples)
        return float(per_epoch * len(self.epochs))


def forward_macs(mf_dim: int = MF_DIM, layers: Sequence[int] = MLP_LAYERS) -> int:
    """Multiply-adds of one NeuMF forward pass: the MLP tower plus the output layer over
    concat(GMF, last MLP layer). Embedding lookups and the GMF product are negligible."""
    tower = sum(a * b for a, b in zip(layers[:-1], layers[1:]))
    return tower + (mf_dim + layers[-1])


def run_record(parsed: Any, system: str) -> RunRecord:
    """Build the RunRecord of one parsed log (`harness.results.log_parser.ParsedLog`)."""
    if parsed.format == "v0.5":
        return _from_v05(parsed, system)
    return _from_mllog(parsed, system)


# ---------------------------------------------------------------------------------------------
# helpers shared by both formats


def _first(events: Sequence[Any], key: str) -> Any | None:
    return next((e for e in events if e.key == key), None)


def _all(events: Iterable[Any], key: str) -> list[Any]:
    return [e for e in events if e.key == key]


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _layers(value: Any) -> list[int] | None:
    """model_hp_mlp_layer_sizes: a JSON list, or (Intel v0.5) a string holding one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, list) and len(value) >= 2 and all(isinstance(v, int) for v in value):
        return value
    return None


def _run_window(parsed: Any, record: RunRecord) -> None:
    """run_start / run_stop times and time to train; duplicates are a problem, not a crash."""
    starts, stops = _all(parsed.events, keys.RUN_START), _all(parsed.events, keys.RUN_STOP)
    if len(starts) > 1:
        record.problems.append(f"{len(starts)} run_start events (one expected)")
    if len(stops) > 1:
        record.problems.append(f"{len(stops)} run_stop events (one expected)")
    if not starts:
        record.problems.append("no run_start")
    record.run_start_ms = starts[0].time_ms if starts else None
    record.run_stop_ms = stops[0].time_ms if stops else None
    if record.run_start_ms is not None and record.run_stop_ms is not None:
        record.time_to_train_s = (record.run_stop_ms - record.run_start_ms) / 1000.0
        if record.time_to_train_s < 0:
            record.problems.append("run_stop precedes run_start")


def _finish(parsed: Any, record: RunRecord, layers: list[int] | None, mf_dim: int | None) -> RunRecord:
    """Everything derived once epochs, target and window are known."""
    record.problems[:0] = [f"unparsed line: {err}" for err in parsed.errors]
    record.epochs.sort(key=lambda e: e[0])
    if record.epochs:
        record.best_hr = max(hr for _, hr, _ in record.epochs)
    if record.target is not None:
        record.epochs_to_target = next((n for n, hr, _ in record.epochs if hr >= record.target), None)
    if record.status == "success" and record.epochs_to_target is None:
        record.problems.append("run_stop reports success but no eval_accuracy reached the target")
    if record.run_stop_ms is None:
        record.status, record.abort_reason = "incomplete", "no run_stop (truncated log)"
    record.forward_macs = forward_macs(mf_dim or MF_DIM, layers or MLP_LAYERS)
    return record


def _training_rate(record: RunRecord, epoch_seconds: list[float]) -> None:
    """Mean training examples/s = train_samples x timed epochs / their summed training seconds
    (the time-weighted mean, so one slow epoch weighs as much as it cost)."""
    record.train_seconds = sum(epoch_seconds) if epoch_seconds else None
    if record.train_samples and record.train_seconds and record.train_seconds > 0:
        record.examples_per_s = record.train_samples * len(epoch_seconds) / record.train_seconds


def _blank(parsed: Any, system: str) -> RunRecord:
    return RunRecord(path=str(parsed.path), system=system, format=parsed.format, division=None,
                     dataset=None, seed=None, status="incomplete", abort_reason=None, target=None,
                     run_start_ms=None, run_stop_ms=None, time_to_train_s=None)


# ---------------------------------------------------------------------------------------------
# our format (:::MLLOG)


def _from_mllog(parsed: Any, system: str) -> RunRecord:
    events = parsed.events
    record = _blank(parsed, system)
    if parsed.format != "mllog":
        record.problems.append(f"not an MLPerf log (format {parsed.format!r})")
    value = lambda key: getattr(_first(events, key), "value", None)  # noqa: E731
    record.division = value(keys.SUBMISSION_DIVISION)
    record.dataset = value(keys.DATASET_NAME)
    record.seed = _as_int(value(keys.SEED))
    record.target = _as_float(value(keys.EVAL_TARGET))
    record.train_samples = _as_int(value(keys.TRAIN_SAMPLES))
    record.eval_samples = _as_int(value(keys.EVAL_SAMPLES))
    logged_name = value(keys.SYSTEM_NAME)
    if logged_name is not None and logged_name != system:
        record.problems.append(f"log names system {logged_name!r}, found under {system!r}")
    _run_window(parsed, record)

    for e in _all(events, keys.EVAL_ACCURACY):
        epoch, hr = _as_int((e.metadata or {}).get(keys.EPOCH_NUM)), _as_float(e.value)
        if epoch is None or hr is None:
            record.problems.append(f"line {e.line_no}: eval_accuracy without epoch_num or value")
            continue
        record.epochs.append((epoch, hr, e.time_ms))

    starts = {_as_int((e.metadata or {}).get(keys.EPOCH_NUM)): e.time_ms for e in _all(events, keys.EPOCH_START)}
    stops = {_as_int((e.metadata or {}).get(keys.EPOCH_NUM)): e.time_ms for e in _all(events, keys.EPOCH_STOP)}
    _training_rate(record, [(stops[k] - starts[k]) / 1000.0 for k in starts if k in stops])

    stop = _first(events, keys.RUN_STOP)
    if stop is not None:
        meta = stop.metadata or {}
        status, reason = meta.get(keys.STATUS), meta.get(keys.ABORT_REASON)
        if status == keys.SUCCESS:
            record.status, record.abort_reason = "success", None
        elif reason in ("interrupted", "error"):
            record.status, record.abort_reason = reason, None
        else:
            record.status, record.abort_reason = "aborted", reason
            if status != keys.ABORTED:
                record.problems.append(f"run_stop status {status!r} (success or aborted expected)")
    return _finish(parsed, record, _layers(value(keys.MODEL_HP_MLP_LAYER_SIZES)),
                   _as_int(value(keys.MODEL_HP_MF_DIM)))


# ---------------------------------------------------------------------------------------------
# MLPerf v0.5 (:::MLPv0.5.0)


def _v05_epoch_value(value: Any) -> tuple[int | None, float | None]:
    """eval_accuracy {"epoch": N, "value": HR}; epoch from 0."""
    if isinstance(value, dict):
        return _as_int(value.get("epoch")), _as_float(value.get("value"))
    return None, _as_float(value)


def _from_v05(parsed: Any, system: str) -> RunRecord:
    events = parsed.events
    record = _blank(parsed, system)
    value = lambda key: getattr(_first(events, key), "value", None)  # noqa: E731
    record.dataset = V05_DATASET
    record.seed = _as_int(value(keys.SEED))
    targets = [_as_float(e.value) for e in _all(events, keys.EVAL_TARGET)]
    record.target = next((t for t in targets if t is not None), MLPERF_TARGET_HR)
    _run_window(parsed, record)

    for e in _all(events, keys.EVAL_ACCURACY):
        epoch, hr = _v05_epoch_value(e.value)
        if epoch is None or hr is None:
            record.problems.append(f"line {e.line_no}: eval_accuracy without epoch or value")
            continue
        record.epochs.append((epoch + 1, hr, e.time_ms))

    # Training samples per epoch: input_size (positives) x (1 + negatives per positive), when logged.
    positives = _as_int(value(keys.V05_INPUT_SIZE))
    num_neg = _as_int(value(keys.INPUT_HP_NUM_NEG)) or NUM_NEG
    record.train_samples = positives * (1 + num_neg) if positives else None
    sizes = [e.value for e in _all(events, keys.V05_EVAL_SIZE)]
    record.eval_samples = next((_as_int(v.get("value")) for v in sizes
                                if isinstance(v, dict) and _as_int(v.get("value"))), None)

    # Epoch training time: train_epoch N .. the eval_start that follows it.
    seconds, begun = [], None
    for e in events:
        if e.key == keys.V05_TRAIN_EPOCH:
            begun = e.time_ms
        elif e.key == keys.EVAL_START and begun is not None:
            seconds, begun = seconds + [(e.time_ms - begun) / 1000.0], None
    _training_rate(record, seconds)

    stop = _first(events, keys.RUN_STOP)
    if stop is not None:
        success = stop.value.get("success") if isinstance(stop.value, dict) else None
        if success is True:
            record.status = "success"
        elif success is False:
            # v0.5 stopped unconverged runs at their epoch limit; the log records no other reason.
            record.status, record.abort_reason = "aborted", "target not reached"
        else:
            record.status, record.abort_reason = "aborted", None
            record.problems.append('run_stop without {"success": true|false}')
    return _finish(parsed, record, _layers(value(keys.MODEL_HP_MLP_LAYER_SIZES)),
                   _as_int(value(keys.MODEL_HP_MF_DIM)))
