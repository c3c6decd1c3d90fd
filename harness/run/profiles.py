"""System profiles: `systems/<name>.json` loaded, validated and typed.

A profile is an MLPerf system description (every field the MLPerf system-description checker
requires, all strings) plus a `"harness"` section that says how this harness runs on that system
(device kind and count, tf.distribute strategy, precision, batch sizes, optimizer constants...).
The same file is what a submission's `systems/<system>.json` looks like, so one shape serves both.

Host fields that depend on the machine (processor model, core counts, memory...) may be the string
"detect"; `resolved_description` fills them from the host at run time (see `DETECTABLE_FIELDS`).

Validation is strict and names the file and the field, because a typo in a profile would otherwise
surface minutes later as a TensorFlow error (or, worse, as a silently different benchmark).
This module never imports TensorFlow: listing and checking profiles must be instant.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.core.errors import UserError
from harness.core.paths import SYSTEMS_DIR
from harness.results.system_desc import (DETECT, DETECTABLE_FIELDS, RESOLVED_MARKER_KEYS, STATUSES,
                                         SYSTEM_DESC_FIELDS, display_path, read_json_file)

DEFAULT_SYSTEMS_DIR = SYSTEMS_DIR
DIVISIONS = ("closed", "open")
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

_DEVICE_LABELS = {"cpu": "CPU", "gpu": "GPU", "tpu": "TPU core"}


@dataclass(frozen=True)
class CpuThreads:
    """TensorFlow thread pools; None leaves TensorFlow's default (all usable cores).

    Also reads like the JSON object it came from (`dict(settings.cpu_threads)` works).
    """

    intra_op: int | None
    inter_op: int | None

    def keys(self) -> tuple[str, ...]:
        return ("intra_op", "inter_op")

    def __getitem__(self, key: str) -> int | None:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)


@dataclass(frozen=True)
class OptimizerSettings:
    name: str             # "adam" | "lazy_adam"
    learning_rate: float
    beta1: float
    beta2: float
    epsilon: float
    source: str           # a KNOWN_HYPERPARAMETER_SETS key or "custom"


@dataclass(frozen=True)
class TpuSettings:
    name: str | None      # TPUClusterResolver tpu=...; None: --tpu flag or the environment


@dataclass(frozen=True)
class HarnessSettings:
    """The `"harness"` section of a profile, typed.

    Validated together: global_batch_size divides by num_replicas; "default"/"one_device" run
    one replica; "mirrored" is single-host; device "tpu" <=> strategy "tpu" (and needs a `tpu`
    object); optimizer.source names a known-good set whose constants must match, or "custom".
    Optional extras: `tpu` (TPU profiles only), `device_label`, `notes` (why these choices).
    """

    device: str                    # "cpu" | "gpu" | "tpu"
    devices_per_host: int          # replicas per host (TPU: TensorFlow TPU devices, i.e. cores)
    num_hosts: int
    strategy: str                  # one of STRATEGIES
    precision: str                 # one of PRECISIONS; eval logits are always fp32
    xla: bool
    cpu_threads: CpuThreads
    global_batch_size: int         # training examples per step, over all replicas
    eval_batch_users: int          # users per eval step PER REPLICA (each x 1,000 candidates)
    optimizer: OptimizerSettings
    max_epochs: int
    steps_per_call: int            # training steps per compiled call
    price_per_hour_usd: float | None
    peak_flops: float | None       # whole-system peak FLOP/s at `precision` (all devices, hosts)
    tpu: TpuSettings | None = None
    device_label: str | None = None  # short device name for tables, e.g. "H100"
    notes: str = ""

    @property
    def num_replicas(self) -> int:
        return self.devices_per_host * self.num_hosts

    @property
    def per_replica_batch_size(self) -> int:
        return self.global_batch_size // self.num_replicas

    def to_json(self) -> dict[str, Any]:
        """The section in its file shape (optional fields only when set)."""
        data = dataclasses.asdict(self)
        if self.tpu is None:
            del data["tpu"]
        if self.device_label is None:
            del data["device_label"]
        if not self.notes:
            del data["notes"]
        return data


@dataclass(frozen=True)
class SystemProfile:
    name: str                      # file stem, e.g. "gpu-h100-x8"
    path: Path
    description: dict[str, str]    # the MLPerf fields, "detect" left as written
    harness: HarnessSettings

    @property
    def num_replicas(self) -> int:
        return self.harness.num_replicas

    @property
    def devices_label(self) -> str:
        """Devices per host for humans, e.g. "8x H100"."""
        label = self.harness.device_label or _DEVICE_LABELS[self.harness.device]
        return f"{self.harness.devices_per_host}x {label}"

    @property
    def detect_fields(self) -> tuple[str, ...]:
        return tuple(k for k in SYSTEM_DESC_FIELDS if self.description.get(k) == DETECT)


# --------------------------------------------------------------------------------------------
# Validation


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
_TPU_SPEC: dict[str, _Check] = {"name": (lambda v: v is None or (isinstance(v, str) and v != ""),
                                         "a TPU name or null")}


def _harness_settings(problems: _Problems, data: Any) -> HarnessSettings | None:
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
    settings = HarnessSettings(
        device=values["device"], devices_per_host=values["devices_per_host"],
        num_hosts=values["num_hosts"], strategy=values["strategy"],
        precision=values["precision"], xla=values["xla"],
        cpu_threads=CpuThreads(threads["intra_op"], threads["inter_op"]),
        global_batch_size=values["global_batch_size"],
        eval_batch_users=values["eval_batch_users"],
        optimizer=OptimizerSettings(
            name=opt["name"], learning_rate=float(opt["learning_rate"]),
            beta1=float(opt["beta1"]), beta2=float(opt["beta2"]),
            epsilon=float(opt["epsilon"]), source=opt["source"]),
        max_epochs=values["max_epochs"], steps_per_call=values["steps_per_call"],
        price_per_hour_usd=_float_or_none(values["price_per_hour_usd"]),
        peak_flops=_float_or_none(values["peak_flops"]),
        tpu=TpuSettings(tpu["name"]) if tpu is not None else None,
        device_label=values.get("device_label"),
        notes=values.get("notes", ""),
    )
    _check_harness_rules(problems, settings)
    return settings if not problems.items else None


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def _check_harness_rules(problems: _Problems, h: HarnessSettings) -> None:
    replicas = h.num_replicas
    split = f"{replicas} replicas (devices_per_host {h.devices_per_host} x num_hosts {h.num_hosts})"
    if h.global_batch_size % replicas:
        problems.add(f"field harness.global_batch_size ({h.global_batch_size}) must divide "
                     f"evenly by the {split}")
    if h.strategy in ("default", "one_device") and replicas != 1:
        problems.add(f"field harness.distribute.strategy {h.strategy!r} runs one replica, but the profile "
                     f"declares {split}; use mirrored, multi_worker_mirrored or tpu")
    if h.strategy == "mirrored" and h.num_hosts != 1:
        problems.add("field harness.distribute.strategy 'mirrored' is single-host, but harness.num_hosts is "
                     f"{h.num_hosts}; use multi_worker_mirrored")
    if (h.device == "tpu") != (h.strategy == "tpu"):
        problems.add(f"field harness.distribute.strategy {h.strategy!r} does not fit harness.device "
                     f"{h.device!r}: TPU devices need strategy 'tpu' and strategy 'tpu' needs "
                     "device 'tpu'")
    if h.device == "tpu" and h.tpu is None:
        problems.add('field harness.tpu is required for a TPU profile: an object {"name": null '
                     'or a TPU name}')
    if h.device != "tpu" and h.tpu is not None:
        problems.add(f"field harness.tpu is only for TPU profiles (harness.device is {h.device!r})")
    if h.device == "tpu" and h.precision == "mixed_float16":
        problems.add("field harness.precision 'mixed_float16' is not supported on TPU; "
                     "use mixed_bfloat16 or fp32")
    opt = h.optimizer
    row = KNOWN_HYPERPARAMETER_SETS.get(opt.source)
    if row is not None:
        for key in ("learning_rate", "beta1", "beta2", "epsilon"):
            ours, theirs = getattr(opt, key), getattr(row, key)
            if not math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=0.0):
                problems.add(f"field harness.optimizer.{key} ({ours!r}) differs from the "
                             f"{opt.source!r} row ({theirs!r}); fix it or set "
                             f"harness.optimizer.source to {CUSTOM_SOURCE!r}")


def _check_description(problems: _Problems, data: dict[str, Any],
                       harness: HarnessSettings | None) -> dict[str, str]:
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


def _check_counts(problems: _Problems, desc: dict[str, str], h: HarnessSettings) -> None:
    """The description's node/accelerator counts must agree with the harness section."""
    nodes = desc.get("number_of_nodes")
    if nodes is not None and nodes != str(h.num_hosts):
        problems.add(f"field number_of_nodes ({nodes!r}) must equal harness.num_hosts "
                     f"({h.num_hosts}) as a string")
    accel = desc.get("accelerators_per_node")
    if accel is None:
        return
    if not re.fullmatch(r"\d+", accel):
        problems.wrong("accelerators_per_node", "a whole number as a string", accel)
    elif h.device == "cpu" and accel != "0":
        problems.add(f"field accelerators_per_node ({accel!r}) must be \"0\" for a CPU profile")
    elif h.device == "gpu" and accel != str(h.devices_per_host):
        problems.add(f"field accelerators_per_node ({accel!r}) must equal "
                     f"harness.devices_per_host ({h.devices_per_host}) for a GPU profile")
    elif h.device == "tpu" and accel == "0":
        problems.add("field accelerators_per_node must count the TPU chips, got \"0\"")


def parse_profile(name: str, path: Path, data: Any) -> SystemProfile:
    """Validate already-parsed JSON as a profile; UserError names the file and the field."""
    problems = _Problems(display_path(path))
    if not isinstance(data, dict):
        problems.add(f"the file must hold a JSON object, got {type(data).__name__}")
        problems.raise_if_any()
    harness = None
    if "harness" not in data:
        problems.missing("harness", "the harness section (device, strategy, batch, optimizer...)")
    else:
        harness = _harness_settings(problems, data["harness"])
    desc = _check_description(problems, data, harness)
    problems.raise_if_any()
    assert harness is not None
    return SystemProfile(name=name, path=path, description=desc, harness=harness)


# --------------------------------------------------------------------------------------------
# Loading


def _profile_paths(systems_dir: Path) -> list[Path]:
    return sorted((p for p in systems_dir.glob("*.json") if not p.name.startswith(".")),
                  key=lambda p: p.stem)


def available_names(systems_dir: str | os.PathLike = DEFAULT_SYSTEMS_DIR) -> list[str]:
    return [p.stem for p in _profile_paths(Path(systems_dir))]


def load_profile(name_or_path: str | os.PathLike,
                 systems_dir: str | os.PathLike = DEFAULT_SYSTEMS_DIR) -> SystemProfile:
    """Load and validate a profile given by name (`systems_dir/<name>.json`) or by file path."""
    text = os.fspath(name_or_path)
    candidate = Path(text)
    looks_like_path = text.endswith(".json") or os.sep in text or "/" in text
    if looks_like_path:
        if not candidate.is_file():
            raise UserError(f"System profile file {text} does not exist.")
        path = candidate
    else:
        path = Path(systems_dir) / f"{text}.json"
        if not path.is_file():
            names = available_names(systems_dir)
            listed = ", ".join(names) if names else f"none (no profiles in {systems_dir})"
            close = difflib.get_close_matches(text, names, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise UserError(f"Unknown system {text!r}; available: {listed}.{hint}")
    return parse_profile(path.stem, path, read_json_file(path))


def scan_profiles(systems_dir: str | os.PathLike = DEFAULT_SYSTEMS_DIR
                  ) -> tuple[list[SystemProfile], list[str]]:
    """Every profile in the directory, plus one message per file that failed to load."""
    profiles, errors = [], []
    for path in _profile_paths(Path(systems_dir)):
        try:
            profiles.append(load_profile(path))
        except UserError as exc:
            errors.append(str(exc))
    return profiles, errors


def list_profiles(systems_dir: str | os.PathLike = DEFAULT_SYSTEMS_DIR) -> list[SystemProfile]:
    """Every profile in the directory, sorted by name; UserError on the first bad one."""
    profiles, errors = scan_profiles(systems_dir)
    if errors:
        raise UserError(errors[0])
    return profiles


# --------------------------------------------------------------------------------------------
# Resolution against this host


def resolved_description(profile: SystemProfile, host: dict[str, Any] | None = None
                         ) -> dict[str, Any]:
    """The MLPerf system description with every "detect" filled from this host, plus the
    harness section, ready to write as `<root>/systems/<system_name>.json`.

    The harness section also records which profile it came from, which fields were detected
    and the host fingerprint, so a results root can tell two different hosts apart.
    For multi-host profiles the detected values are this (the chief's) host's.
    """
    from harness.distribute import hardware  # light: psutil/platform only

    host = host if host is not None else hardware.host_info()
    detected_values = hardware.detected_description_values(host, profile.harness.num_hosts)
    desc: dict[str, Any] = {}
    detected = []
    for key in SYSTEM_DESC_FIELDS:
        value = profile.description[key]
        if value == DETECT:
            value = detected_values[key]
            detected.append(key)
        desc[key] = value
    section = profile.harness.to_json()
    section["profile"] = profile.name
    section["detected_fields"] = detected
    section["host_fingerprint"] = host["fingerprint"]
    desc["harness"] = section
    return desc
