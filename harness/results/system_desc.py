"""The MLPerf system description: its fields, the "detect" placeholder (and filling it from the
run summaries), and reading one from disk.

Why a module below the run layer: the results tree and the compliance checks read and write
system descriptions (`<root>/systems/<name>.json`) without needing what makes a description a
runnable profile (the "harness" section and its validation, harness.run.profiles).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.core.errors import UserError

DETECT = "detect"

# Every field of an MLPerf training system description (mlperf_logging system_desc_checker),
# in the order the checker lists them. Values are strings, as in published submissions.
SYSTEM_DESC_FIELDS: tuple[str, ...] = (
    "submitter", "division", "status", "system_name", "number_of_nodes",
    "host_processors_per_node", "host_processor_model_name", "host_processor_core_count",
    "host_processor_vcpu_count", "host_processor_frequency", "host_processor_caches",
    "host_processor_interconnect", "host_memory_capacity", "host_memory_configuration",
    "host_storage_type", "host_storage_capacity", "host_networking", "host_networking_topology",
    "accelerators_per_node", "accelerator_model_name", "accelerator_host_interconnect",
    "accelerator_frequency", "accelerator_on-chip_memories", "accelerator_memory_configuration",
    "accelerator_memory_capacity", "accelerator_interconnect", "accelerator_interconnect_topology",
    "cooling", "hw_notes", "framework", "other_software_stack", "operating_system", "sw_notes",
)

# Fields that may say "detect": only what psutil/platform/sysfs can really tell about this host.
DETECTABLE_FIELDS: frozenset[str] = frozenset({
    "system_name", "host_processors_per_node", "host_processor_model_name",
    "host_processor_core_count", "host_processor_vcpu_count", "host_processor_frequency",
    "host_processor_caches", "host_memory_capacity", "host_storage_capacity",
    "framework", "operating_system", "other_software_stack",
})

# The values this project writes ("onprem", "cloud") plus the spellings that the current
# system-description checker (ruleset >= 4.0) requires, so either kind of file loads.
STATUSES = ("onprem", "cloud", "research", "preview", "Available on-premise", "Available cloud",
            "Research, Development, or Internal (RDI)", "Preview")

# Keys a resolved description (written into a results root) adds to the harness section; a
# profile may carry them, so a resolved description can itself be loaded as a profile.
RESOLVED_MARKER_KEYS = ("profile", "detected_fields", "host_fingerprint")

# The run summary (result_<n>.json) key under which a run records what every field a profile may
# leave "detect" is on its host (harness.run.profiles.detected_values produces the values).
SUMMARY_DETECTED_KEY = "detected_description"


def display_path(path: Path) -> str:
    """The path as users typed it: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)


def read_json_file(path: Path) -> Any:
    """JSON from `path`; UserError with the file and the error position when it is not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {display_path(path)}: {exc.strerror or exc}.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{display_path(path)} is not valid JSON: {exc.msg} at line {exc.lineno} "
                        f"column {exc.colno}.") from exc


def is_resolved(data: Any) -> bool:
    """A description a run resolved from a profile: its harness section has the marker keys."""
    harness = data.get("harness") if isinstance(data, dict) else None
    return isinstance(harness, dict) and any(k in harness for k in RESOLVED_MARKER_KEYS)


def is_profile(data: Any) -> bool:
    """A profile kept as a root's description (the project's own systems/, never overwritten).

    Why it matters: a profile's division is the default it is built for, not a submission's
    claim, and its "detect" fields are what the runs' summaries record.
    """
    harness = data.get("harness") if isinstance(data, dict) else None
    return isinstance(harness, dict) and not is_resolved(data)


@dataclass(frozen=True)
class FilledDescription:
    """A description with its "detect" fields filled from the run summaries, and what was not."""

    description: dict[str, Any]
    missing: tuple[str, ...]                          # still "detect": no summary records them
    conflicts: tuple[tuple[str, tuple[str, ...]], ...]  # (field, the values the runs recorded)

    def warnings(self) -> list[str]:
        """One sentence for the fields left "detect", one for the fields the runs disagree on."""
        found = []
        if self.missing:
            found.append(f"fields still {DETECT!r}, and no run summary records them on the "
                         f"measured host: {', '.join(self.missing)}")
        if self.conflicts:
            fields = ", ".join(f"{key} {' / '.join(map(repr, values))}" for key, values in self.conflicts)
            found.append(f"the runs were recorded on different hosts ({fields}); give each host "
                         "its own --system-name")
        return found


def fill_detected(description: dict[str, Any], summaries: Sequence[Any]) -> FilledDescription:
    """`description` with each "detect" field set to what the runs' summaries recorded for it.

    Why: a run into the project's own root leaves the profile there untouched (a template for
    any host) and records the host's values in its summary instead (SUMMARY_DETECTED_KEY), so
    `check` and `report` describe the measured host. A field the runs disagree on is never
    filled with one of them: it reads "A / B" and is listed in `conflicts`.
    """
    recorded = [s[SUMMARY_DETECTED_KEY] for s in summaries
                if isinstance(s, dict) and isinstance(s.get(SUMMARY_DETECTED_KEY), dict)]
    filled, missing, conflicts = dict(description), [], []
    for key in (k for k in SYSTEM_DESC_FIELDS if description.get(k) == DETECT):
        values = tuple(dict.fromkeys(str(r[key]) for r in recorded if r.get(key) not in (None, "", DETECT)))
        if not values:
            missing.append(key)
            continue
        filled[key] = " / ".join(values)
        if len(values) > 1:
            conflicts.append((key, values))
    return FilledDescription(filled, tuple(missing), tuple(conflicts))
