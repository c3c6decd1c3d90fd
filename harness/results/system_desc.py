"""The MLPerf system description: its fields, the "detect" placeholder, and reading one from disk.

Why a module below the run layer: the results tree and the compliance checks read and write
system descriptions (`<root>/systems/<name>.json`) without needing what makes a description a
runnable profile (the "harness" section and its validation, harness.run.profiles).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
