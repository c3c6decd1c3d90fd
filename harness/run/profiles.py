"""System profiles: `systems/<name>.json` loaded, validated and typed.

A profile is an MLPerf system description (every field the MLPerf system-description checker
requires, all strings) plus a `"harness"` section that says how this harness runs on that system
(device kind and count, tf.distribute strategy, precision, batch sizes, optimizer constants...).
The same file is what a submission's `systems/<system>.json` looks like, so one shape serves both.

Host fields that depend on the machine (processor model, core counts, memory...) may be the string
"detect"; `resolved_description` fills them from the host at run time (see `DETECTABLE_FIELDS`),
with the values `detected_values` produces and every run also records in its summary.

Validation (`harness.run.profile_schema`) is strict and names the file and the field; this module
turns the checked values into the typed profile and finds profiles on disk. It never imports
TensorFlow: listing and checking profiles must be instant.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.paths import SYSTEMS_DIR
from harness.results.system_desc import DETECT, SYSTEM_DESC_FIELDS, display_path, read_json_file
from harness.run.profile_schema import check_profile

DEFAULT_SYSTEMS_DIR = SYSTEMS_DIR

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
    source: str           # a profile_schema.KNOWN_HYPERPARAMETER_SETS key or "custom"


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
    strategy: str                  # one of profile_schema.STRATEGIES
    precision: str                 # one of profile_schema.PRECISIONS; eval logits are always fp32
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
# From checked JSON to the typed profile


def parse_profile(name: str, path: Path, data: Any) -> SystemProfile:
    """Validate already-parsed JSON as a profile; UserError names the file and the field."""
    checked = check_profile(display_path(path), data)
    h = checked.harness
    settings = HarnessSettings(**{
        **h,
        "cpu_threads": CpuThreads(**h["cpu_threads"]),
        "optimizer": OptimizerSettings(**h["optimizer"]),
        "tpu": TpuSettings(**h["tpu"]) if h["tpu"] is not None else None,
    })
    return SystemProfile(name=name, path=path, description=checked.description, harness=settings)


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


def detected_values(system_name: str, num_hosts: int, host: dict[str, Any] | None = None
                    ) -> dict[str, str]:
    """This host's value of every field a profile may leave "detect", for results named `system_name`.

    The one producer of these values: `resolved_description` writes them into a results root's
    description, and every run records them in its summary (SUMMARY_DETECTED_KEY), from which
    `check` and `report` fill a profile left as the root's description. system_name is the name
    the results go by (the profile's, or --system-name), as in the log and the file name: the
    processor fields already describe the CPU, and hosts told apart with --system-name must not
    share a name. For multi-host profiles the values are this (the chief's) host's.
    """
    from harness.distribute import hardware  # light: psutil/platform only

    host = host if host is not None else hardware.host_info()
    values = hardware.detected_description_values(host, num_hosts)
    values["system_name"] = system_name
    return values


def resolved_description(profile: SystemProfile, host: dict[str, Any] | None = None, *,
                         system_name: str | None = None, division: str | None = None
                         ) -> dict[str, Any]:
    """The MLPerf system description with every "detect" filled from this host, plus the
    harness section, ready to write as `<root>/systems/<system_name>.json`.

    `system_name` (default: the profile's name) is the results' name for the system; `division`
    (default: the profile's) is the division of the runs the description goes with, since a
    submission claims one division per system and the profile's is only the one it is built for.
    The harness section also records which profile it came from, which fields were detected
    and the host fingerprint, so a results root can tell two different hosts apart.
    """
    from harness.distribute import hardware  # light: psutil/platform only

    host = host if host is not None else hardware.host_info()
    values = detected_values(system_name or profile.name, profile.harness.num_hosts, host)
    desc: dict[str, Any] = {}
    detected = []
    for key in SYSTEM_DESC_FIELDS:
        value = profile.description[key]
        if value == DETECT:
            value = values[key]
            detected.append(key)
        desc[key] = value
    if division is not None:
        desc["division"] = division
    section = profile.harness.to_json()
    section["profile"] = profile.name
    section["detected_fields"] = detected
    section["host_fingerprint"] = host["fingerprint"]
    desc["harness"] = section
    return desc
