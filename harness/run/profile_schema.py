"""What a valid system profile is: the field specs, the rules that tie fields together, and the
one-sentence messages that name the file, the field and what was expected.

Why a module of its own, and why by hand: a typo in a profile would otherwise surface minutes
later as a TensorFlow error (or, worse, as a silently different benchmark), so every problem is
collected and the first is reported as one sentence with a "did you mean" hint and a count of
the rest. A JSON Schema library would still need this module's cross-field rules, its hints and
its wording on top, so it would add code rather than remove it.

This module reads plain JSON and returns plain, checked values; `harness.run.profiles` turns
them into the typed profile. It never imports TensorFlow: checking profiles must be instant.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from harness.compliance.rules import DIVISIONS
from harness.core.errors import UserError
from harness.results.system_desc import (DETECT, DETECTABLE_FIELDS, RESOLVED_MARKER_KEYS, STATUSES,
                                         SYSTEM_DESC_FIELDS)

DEVICES = ("cpu", "gpu", "tpu")
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
PRECISIONS = ("fp32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "lazy_adam")
CUSTOM_SOURCE = "custom"


@dataclass(frozen=True)
class HyperparameterSet:
    """A hyperparameter set published as reaching HR@10 0.635 on ml-20m (num_neg 4, 999 eval negatives)."""

    title: str
    batch_size: int
    learning_rate: float
    beta1: float
    beta2: float
    epsilon: float


# The known-good ml-20m sets of the MLPerf v0.5 era (reference, TF Model Garden / Intel, NVIDIA,
# Google TPU). A profile's optimizer.source names one of them (its constants must then match the
# set exactly, so a typo cannot pass as a known-good set) or "custom".
KNOWN_HYPERPARAMETER_SETS: dict[str, HyperparameterSet] = {
    "mlperf-reference-v0.5": HyperparameterSet(
        "MLPerf v0.5 reference", 2048, 0.0005, 0.9, 0.999, 1e-8),
    "tf-model-garden": HyperparameterSet(
        "TF Model Garden / Intel v0.5", 98304, 0.00382059, 0.783529, 0.909003, 1.45439e-7),
    "nvidia-v0.5": HyperparameterSet(
        "NVIDIA v0.5 (8-16 V100)", 1048576, 0.0045, 0.25, 0.5, 1e-8),
    "google-tpu-v0.5": HyperparameterSet(
        "Google TPU code (v0.5 era)", 32768, 0.00136794, 0.781076, 0.977589, 7.36e-8),
}


@dataclass(frozen=True)
class CheckedProfile:
    """A profile that passed every check, still as plain values.

    `harness` has exactly the fields of `harness.run.profiles.HarnessSettings`, with its nested
    objects (`cpu_threads`, `optimizer`, `tpu`) as dicts and every number already a float where
    the settings hold a float.
    """

    description: dict[str, str]
    harness: dict[str, Any]


class _Problems:
    """Collects every problem in one file; reports the first (one sentence) plus a count."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []

    def wrong(self, field: str, expected: str, value: Any) -> None:
        self.items.append(f"field {field} must be {expected}, got {_show(value)}")

    def missing(self, field: str, expected: str) -> None:
        self.items.append(f"field {field} is missing (expected {expected})")

    def add(self, text: str) -> None:
        self.items.append(text)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        more = len(self.items) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise UserError(f"{self.where}: {self.items[0]}{tail}.")


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer too large for a float
        return False


# A check is (predicate, what is expected in words).
_Check = tuple[Callable[[Any], bool], str]
POSITIVE_INT: _Check = (lambda v: _is_int(v) and v > 0, "a positive integer")
OPTIONAL_POSITIVE_INT: _Check = (lambda v: v is None or (_is_int(v) and v > 0),
                                 "a positive integer or null")
BOOL: _Check = (lambda v: isinstance(v, bool), "true or false")
POSITIVE_NUMBER: _Check = (lambda v: _is_number(v) and v > 0, "a positive number")
OPTIONAL_POSITIVE_NUMBER: _Check = (lambda v: v is None or (_is_number(v) and v > 0),
                                    "a positive number or null")
UNIT_INTERVAL: _Check = (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
OPTIONAL_STRING: _Check = (lambda v: v is None or isinstance(v, str), "a string or null")


def _choice(options: tuple[str, ...]) -> _Check:
    return (lambda v: v in options, "one of " + ", ".join(options))


def _section(problems: _Problems, data: Any, prefix: str,
             spec: dict[str, _Check], optional: tuple[str, ...] = (),
             ignored: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Check one JSON object against `spec`; returns the valid values (None if not an object)."""
    if not isinstance(data, dict):
        problems.wrong(prefix, "an object", data)
        return None
    values: dict[str, Any] = {}
    # Unknown keys first: a misspelt key is one mistake, reported as such, not also as "missing".
    hinted = set()
    for key in data:
        if key not in spec and key not in ignored:
            problems.add(_unknown_field(f"{prefix}.{key}", key, list(spec)))
            hinted.update(difflib.get_close_matches(key, list(spec), n=1))
    for key, (ok, expected) in spec.items():
        if key not in data:
            if key not in optional and key not in hinted:
                problems.missing(f"{prefix}.{key}", expected)
            continue
        if ok(data[key]):
            values[key] = data[key]
        else:
            problems.wrong(f"{prefix}.{key}", expected, data[key])
    return values


def _unknown_field(field: str, key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"field {field} is not a known field{hint}"


_ANY: Callable[[Any], bool] = lambda v: True  # noqa: E731 - nested objects are checked by _section
_HARNESS_SPEC: dict[str, _Check] = {
    "device": _choice(DEVICES),
    "devices_per_host": POSITIVE_INT,
    "num_hosts": POSITIVE_INT,
    "strategy": _choice(STRATEGIES),
    "precision": _choice(PRECISIONS),
    "xla": BOOL,
    "cpu_threads": (_ANY, "an object {intra_op, inter_op}"),
    "global_batch_size": POSITIVE_INT,
    "eval_batch_users": POSITIVE_INT,
    "optimizer": (_ANY, "an object {name, learning_rate, beta1, beta2, epsilon, source}"),
    "max_epochs": POSITIVE_INT,
    "steps_per_call": POSITIVE_INT,
    "price_per_hour_usd": OPTIONAL_POSITIVE_NUMBER,
    "peak_flops": OPTIONAL_POSITIVE_NUMBER,
    "tpu": (_ANY, 'an object {"name": ...}'),
    "device_label": OPTIONAL_STRING,
    "notes": (lambda v: isinstance(v, str), "a string"),
}
_HARNESS_OPTIONAL = ("tpu", "device_label", "notes")
_THREADS_SPEC: dict[str, _Check] = {"intra_op": OPTIONAL_POSITIVE_INT,
                                    "inter_op": OPTIONAL_POSITIVE_INT}
_OPTIMIZER_SPEC: dict[str, _Check] = {
    "name": _choice(OPTIMIZERS),
    "learning_rate": POSITIVE_NUMBER,
    "beta1": UNIT_INTERVAL,
    "beta2": UNIT_INTERVAL,
    "epsilon": POSITIVE_NUMBER,
    "source": _choice((*KNOWN_HYPERPARAMETER_SETS, CUSTOM_SOURCE)),
}
_OPTIMIZER_FLOATS = ("learning_rate", "beta1", "beta2", "epsilon")
_TPU_SPEC: dict[str, _Check] = {"name": (lambda v: v is None or (isinstance(v, str) and v != ""),
                                         "a TPU name or null")}


def _harness_values(problems: _Problems, data: Any) -> dict[str, Any] | None:
    """Type-check the harness section, then the rules that tie its fields together."""
    values = _section(problems, data, "harness", _HARNESS_SPEC, _HARNESS_OPTIONAL,
                      ignored=RESOLVED_MARKER_KEYS)
    if values is None:
        return None
    threads = (_section(problems, data["cpu_threads"], "harness.cpu_threads", _THREADS_SPEC)
               if "cpu_threads" in data else None)
    opt = (_section(problems, data["optimizer"], "harness.optimizer", _OPTIMIZER_SPEC)
           if "optimizer" in data else None)
    tpu = None
    if data.get("tpu") is not None:
        tpu = _section(problems, data["tpu"], "harness.tpu", _TPU_SPEC)
    if problems.items:
        return None
    assert threads is not None and opt is not None
    harness = {
        **values,
        "cpu_threads": threads,
        "optimizer": {**opt, **{key: float(opt[key]) for key in _OPTIMIZER_FLOATS}},
        "price_per_hour_usd": _float_or_none(values["price_per_hour_usd"]),
        "peak_flops": _float_or_none(values["peak_flops"]),
        "tpu": tpu,
        "device_label": values.get("device_label"),
        "notes": values.get("notes", ""),
    }
    _check_harness_rules(problems, harness)
    return harness if not problems.items else None


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def _check_harness_rules(problems: _Problems, h: dict[str, Any]) -> None:
    device, strategy, num_hosts = h["device"], h["strategy"], h["num_hosts"]
    replicas = h["devices_per_host"] * num_hosts
    split = f"{replicas} replicas (devices_per_host {h['devices_per_host']} x num_hosts {num_hosts})"
    if h["global_batch_size"] % replicas:
        problems.add(f"field harness.global_batch_size ({h['global_batch_size']}) must divide "
                     f"evenly by the {split}")
    if strategy in ("default", "one_device") and replicas != 1:
        problems.add(f"field harness.distribute.strategy {strategy!r} runs one replica, but the profile "
                     f"declares {split}; use mirrored, multi_worker_mirrored or tpu")
    if strategy == "mirrored" and num_hosts != 1:
        problems.add("field harness.distribute.strategy 'mirrored' is single-host, but harness.num_hosts is "
                     f"{num_hosts}; use multi_worker_mirrored")
    if (device == "tpu") != (strategy == "tpu"):
        problems.add(f"field harness.distribute.strategy {strategy!r} does not fit harness.device "
                     f"{device!r}: TPU devices need strategy 'tpu' and strategy 'tpu' needs "
                     "device 'tpu'")
    if device == "tpu" and h["tpu"] is None:
        problems.add('field harness.tpu is required for a TPU profile: an object {"name": null '
                     'or a TPU name}')
    if device != "tpu" and h["tpu"] is not None:
        problems.add(f"field harness.tpu is only for TPU profiles (harness.device is {device!r})")
    if device == "tpu" and h["precision"] == "mixed_float16":
        problems.add("field harness.precision 'mixed_float16' is not supported on TPU; "
                     "use mixed_bfloat16 or fp32")
    _check_known_set(problems, h["optimizer"])


def _check_known_set(problems: _Problems, opt: dict[str, Any]) -> None:
    """A profile that names a known-good set must carry its constants exactly."""
    row = KNOWN_HYPERPARAMETER_SETS.get(opt["source"])
    if row is None:
        return
    for key in _OPTIMIZER_FLOATS:
        ours, theirs = opt[key], getattr(row, key)
        if not math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=0.0):
            problems.add(f"field harness.optimizer.{key} ({ours!r}) differs from the "
                         f"{opt['source']!r} row ({theirs!r}); fix it or set "
                         f"harness.optimizer.source to {CUSTOM_SOURCE!r}")


def _check_description(problems: _Problems, data: dict[str, Any],
                       harness: dict[str, Any] | None) -> dict[str, str]:
    desc: dict[str, str] = {}
    known = [*SYSTEM_DESC_FIELDS, "harness"]
    hinted = set()
    for key in data:
        if key not in known:
            problems.add(_unknown_field(key, key, known))
            hinted.update(difflib.get_close_matches(key, known, n=1))
    for key in SYSTEM_DESC_FIELDS:
        if key not in data:
            if key not in hinted:
                problems.missing(key, "a string (an MLPerf system description field)")
            continue
        value = data[key]
        if not (isinstance(value, str) and value.strip()):
            problems.wrong(key, "a non-empty string", value)
            continue
        if value == DETECT and key not in DETECTABLE_FIELDS:
            problems.add(f"field {key} cannot be \"detect\" (only "
                         f"{', '.join(sorted(DETECTABLE_FIELDS))} are detected); describe it")
            continue
        desc[key] = value
    if "division" in desc and desc["division"] not in DIVISIONS:
        problems.wrong("division", "one of " + ", ".join(DIVISIONS), desc["division"])
    if "status" in desc and desc["status"] not in STATUSES:
        problems.wrong("status", "one of " + ", ".join(STATUSES), desc["status"])
    if harness is not None:
        _check_counts(problems, desc, harness)
    return desc


def _check_counts(problems: _Problems, desc: dict[str, str], h: dict[str, Any]) -> None:
    """The description's node/accelerator counts must agree with the harness section."""
    nodes = desc.get("number_of_nodes")
    if nodes is not None and nodes != str(h["num_hosts"]):
        problems.add(f"field number_of_nodes ({nodes!r}) must equal harness.num_hosts "
                     f"({h['num_hosts']}) as a string")
    accel = desc.get("accelerators_per_node")
    if accel is None:
        return
    device, per_host = h["device"], h["devices_per_host"]
    if not re.fullmatch(r"\d+", accel):
        problems.wrong("accelerators_per_node", "a whole number as a string", accel)
    elif device == "cpu" and accel != "0":
        problems.add(f"field accelerators_per_node ({accel!r}) must be \"0\" for a CPU profile")
    elif device == "gpu" and accel != str(per_host):
        problems.add(f"field accelerators_per_node ({accel!r}) must equal "
                     f"harness.devices_per_host ({per_host}) for a GPU profile")
    elif device == "tpu" and accel == "0":
        problems.add("field accelerators_per_node must count the TPU chips, got \"0\"")


def check_profile(where: str, data: Any) -> CheckedProfile:
    """Check already-parsed JSON as a profile; UserError (prefixed with `where`, the file as
    the user knows it) names the field and what was expected."""
    problems = _Problems(where)
    if not isinstance(data, dict):
        problems.add(f"the file must hold a JSON object, got {type(data).__name__}")
        problems.raise_if_any()
    harness = None
    if "harness" not in data:
        problems.missing("harness", "the harness section (device, strategy, batch, optimizer...)")
    else:
        harness = _harness_values(problems, data["harness"])
    desc = _check_description(problems, data, harness)
    problems.raise_if_any()
    assert harness is not None
    return CheckedProfile(description=desc, harness=harness)
