"""The NCF rulesets for the official checker engine, resolved for this machine at run time.

The YAML files in `rulesets/` are templates: `@NAME@` stands for a number from
`reference.constants` (one source for every number) or for a run-time value. The engine needs
absolute config paths (it joins them to its own package folder) and `enqueue_config()` in
common.yaml must name the division file absolutely too, so `resolve_rulesets` writes filled-in
copies into a caller-owned folder (a temporary directory) wherever the package is installed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.core.atomic import atomic_write_text
from reference import constants

TEMPLATE_DIR = Path(__file__).resolve().parent / "rulesets"
COMMON_TEMPLATE = "common.yaml"
DIVISIONS = ("closed", "open")
# common.yaml's submission_division record enqueues "<division>_ncf.yaml" from the same folder.
DIVISION_TEMPLATES = {division: f"{division}_ncf.yaml" for division in DIVISIONS}
# The dataset of the closed division (a name, not a number, so it is not in reference.constants).
CLOSED_DATASET = "ml-20m"
ENGINE_USAGE, ENGINE_RULESET = "training", "0.7.0"  # the engine's log parser for `:::MLLOG` lines

_PLACEHOLDER = re.compile(r"@([A-Z0-9_]+)@")


def constant_values() -> dict[str, object]:
    """Every constant a template may name, as the Python value the YAML code compares against."""
    return {
        "BENCHMARK": constants.BENCHMARK,
        "NUM_NEG": constants.NUM_NEG,
        "NUM_EVAL_NEGATIVES": constants.NUM_EVAL_NEGATIVES,
        "EVAL_ROW": constants.EVAL_ROW,
        "MIN_RATINGS": constants.MIN_RATINGS,
        "MF_DIM": constants.MF_DIM,
        "MLP_LAYERS": list(constants.MLP_LAYERS),
        "LOSS_FN": constants.LOSS_FN,
        "MLPERF_TARGET_HR": constants.MLPERF_TARGET_HR,
        "MAX_INIT_SECONDS": constants.MAX_INIT_SECONDS,
        "MAX_INIT_MS": constants.MAX_INIT_SECONDS * 1000,
        "CLOSED_OPTIMIZERS": list(constants.CLOSED_OPTIMIZERS),
        "CLOSED_DATASET": CLOSED_DATASET,
    }


def fill_template(text: str, values: dict[str, object]) -> str:
    """Replace each @NAME@ by repr(value) outside YAML comment lines; an unknown name is a bug."""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"ruleset template names unknown placeholder @{name}@")
        return repr(values[name])

    lines = text.splitlines(keepends=True)
    return "".join(line if line.lstrip().startswith("#") else _PLACEHOLDER.sub(replace, line) for line in lines)


@dataclass(frozen=True)
class ResolvedRulesets:
    """Filled-in copies of the rulesets in one folder, with absolute paths throughout."""

    folder: Path

    @property
    def common_following_log(self) -> Path:
        """common.yaml that enqueues the division file the log declares (the official way)."""
        return self.folder / COMMON_TEMPLATE

    @property
    def common_only(self) -> Path:
        """common.yaml that enqueues nothing: used when the harness forces the division."""
        return self.folder / "common_fixed_division.yaml"

    def division_file(self, division: str) -> Path:
        return self.folder / DIVISION_TEMPLATES[division]

    def configs(self, forced_division: str | None) -> list[str]:
        """The engine's config queue for one log: common first, then the division rules."""
        if forced_division is None:
            return [str(self.common_following_log)]
        return [str(self.common_only), str(self.division_file(forced_division))]


def resolve_rulesets(folder: str | Path) -> ResolvedRulesets:
    """Write the filled-in rulesets into `folder` (absolute paths, numbers from reference.constants)."""
    folder = Path(folder).resolve()
    resolved = ResolvedRulesets(folder)
    values = constant_values()
    values["RULESET_DIR"] = str(folder)
    common = (TEMPLATE_DIR / COMMON_TEMPLATE).read_text(encoding="utf-8")
    atomic_write_text(resolved.common_following_log,
                      fill_template(common, {**values, "FOLLOW_DECLARED_DIVISION": True}))
    atomic_write_text(resolved.common_only, fill_template(common, {**values, "FOLLOW_DECLARED_DIVISION": False}))
    for division, name in DIVISION_TEMPLATES.items():
        text = (TEMPLATE_DIR / name).read_text(encoding="utf-8")
        atomic_write_text(resolved.division_file(division), fill_template(text, values))
    return resolved
