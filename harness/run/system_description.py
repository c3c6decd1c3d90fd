"""Writing a run's system description into its results root, without ever mixing two systems.

The rules (harness.results.tree's docstring lists them) need the profile validator to tell a
profile that agrees with this run from one that does not, so this lives in the run layer,
above both the results tree and the profiles.
"""
from __future__ import annotations

import json
from typing import Any

from harness.core.atomic import atomic_write_text
from harness.core.errors import UserError
from harness.core.writable import writing_to
from harness.results.system_desc import DETECT, SYSTEM_DESC_FIELDS, display_path, is_resolved, read_json_file
from harness.results.tree import RESULTS_FLAG, ResultsTree
from harness.run.profiles import parse_profile


def write_system_description(tree: ResultsTree, system_name: str, desc: dict[str, Any]) -> str:
    """Write `<root>/systems/<system_name>.json` atomically, or explain why not.

    Returns "written", "unchanged" or "profile" (see the module docstring).
    """
    path = tree.system_description_path(system_name)
    if not path.exists():
        with writing_to(path.parent, RESULTS_FLAG):
            atomic_write_text(path, json.dumps(desc, indent=2, ensure_ascii=False) + "\n")
        return "written"
    existing = read_json_file(path)
    shown = display_path(path)
    if is_resolved(existing):
        if existing == desc:
            return "unchanged"
        field = _first_difference(existing, desc)
        if field == "division":
            raise UserError(f"{shown} describes this system's {existing['division']} results and this "
                            f"run is {desc['division']}; a submission claims one division per system, "
                            "so pass --system-name NAME or another --results-dir.")
        raise UserError(f"{shown} already describes a different system ({field}: "
                        f"{_short(existing, field)} there, {_short(desc, field)} here); pass "
                        "--system-name NAME or another --results-dir so results of different "
                        "systems do not mix.")
    profile = parse_profile(path.stem, path, existing)
    ours = parse_profile(system_name, path, desc)
    mismatch = _profile_mismatch(profile.description, profile.harness == ours.harness, desc)
    if mismatch is None:
        return "profile"
    raise UserError(f"Refusing to overwrite the system profile {shown} ({mismatch}); pass "
                    "--system-name NAME or --results-dir DIR to record this run elsewhere.")


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    for key in (*SYSTEM_DESC_FIELDS, "harness"):
        if a.get(key) != b.get(key):
            if key == "harness" and isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                sub = sorted(set(a[key]) | set(b[key]))
                return "harness." + next(k for k in sub if a[key].get(k) != b[key].get(k))
            return key
    return next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def _short(data: dict[str, Any], field: str) -> str:
    value: Any = data
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _profile_mismatch(declared: dict[str, str], same_harness: bool,
                      desc: dict[str, Any]) -> str | None:
    """Why the profile does not describe the system in `desc`; None when it does.

    The division is not compared: a profile's is the one it is built for, the run's description
    carries the division of its runs (check reads a profile's the same way).
    """
    if not same_harness:
        return "its harness section differs from this run's"
    for key in SYSTEM_DESC_FIELDS:
        if key != "division" and declared[key] != DETECT and declared[key] != desc.get(key):
            return f"its {key} is {declared[key]!r}, this run's is {desc.get(key)!r}"
    return None
