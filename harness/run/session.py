"""From a command's overrides to a benchmark session ready to run: the steps every training command shares.

Why one module: `run`, `throughput`, `calibrate` and `time-to-target` resolve the same plan the
same way, and `run` and `calibrate` start the same session, so these steps are library
functions of the run layer rather than one command's helpers that the others would import.
The order is fixed: resolve (no TensorFlow, so `--dry-run` answers at once), then the hardware
gate (one sentence within about 20 s when the declared devices are missing), then data and
TensorFlow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.paths import DEFAULT_RESULTS_ROOT
from harness.run.plan import PlanOverrides, RunPlan, resolve_plan
from harness.run.profiles import SystemProfile, load_profile

if TYPE_CHECKING:
    from harness.run.progress import RunDisplay
    from harness.run.runner import BenchmarkSession


def resolve(overrides: PlanOverrides) -> tuple[SystemProfile, RunPlan]:
    """The profile `overrides.system` names and the validated plan; user errors become UserError."""
    profile = load_profile(overrides.system)
    return profile, resolve_plan(profile, overrides, str(DEFAULT_RESULTS_ROOT))


def check_hardware(profile: SystemProfile, plan: RunPlan) -> None:
    """The pre-init hardware gate; the TPU it found (flag, profile or environment) goes into the plan."""
    from harness.distribute.hardware import check_declared_hardware

    found = check_declared_hardware(profile, tpu_name=plan.tpu, worker_hosts=plan.worker_hosts,
                                    task_index=plan.task_index)
    plan.tpu = (found.get("tpu") or {}).get("name", plan.tpu)


def start_session(profile: SystemProfile, plan: RunPlan, display: RunDisplay) -> BenchmarkSession:
    """Gate the hardware, then load data and build TensorFlow's strategy: a session ready to run."""
    from harness.run.runner import BenchmarkSession

    check_hardware(profile, plan)
    session = BenchmarkSession(plan, profile, display)
    session.start()
    return session
