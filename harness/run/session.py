"""From a command's overrides to a benchmark session ready to run: the steps every training command shares.

Why one module: `run`, `throughput`, `calibrate` and `time-to-target` resolve the same plan the
same way, and `run` and `calibrate` start the same session, so these steps are library
functions of the run layer rather than one command's helpers that the others would import.
The order is fixed: resolve (no TensorFlow, so `--dry-run` answers at once), then a probe of
the results root (one sentence at once when it cannot be written), then the hardware
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
    """The pre-init hardware gate; the TPU it found (flag, profile or environment) goes into the plan.

    The cluster's size comes first: one task per declared host, whatever the source (flags,
    TF_CONFIG, Slurm), is known at once, while finding devices may take seconds. So is the bf16
    gate: bf16 compute on a CPU without bf16 instructions is refused unless --allow-emulated-bf16.
    """
    from harness.core.errors import UserError
    from harness.distribute.cluster import check_own_port_free, check_task_count
    from harness.distribute.hardware import bf16_verdict, check_declared_hardware

    bf16 = bf16_verdict(plan.precision, plan.device, plan.allow_emulated_bf16)
    if not bf16.passes:
        raise UserError(bf16.refusal(profile.name))

    if plan.strategy == "multi_worker_mirrored":   # the one strategy whose hosts form a cluster
        check_task_count(plan.cluster, plan.num_hosts, f"System {profile.name}")
        check_own_port_free(plan.cluster)
    slurm = plan.cluster if plan.cluster is not None and plan.cluster.source == "slurm" else None
    found = check_declared_hardware(profile, tpu_name=plan.tpu,
                                    worker_hosts=list(slurm.workers) if slurm else plan.worker_hosts,
                                    task_index=slurm.task_index if slurm else plan.task_index)
    plan.tpu = (found.get("tpu") or {}).get("name", plan.tpu)


def start_session(profile: SystemProfile, plan: RunPlan, display: RunDisplay) -> BenchmarkSession:
    """Check the results root can be written, gate the hardware, then load data and build
    TensorFlow's strategy: a session ready to run.

    Every process checks the root, the workers of a multi-host run too: which one is the chief
    is known only once TensorFlow built the strategy, and all are started with the same flags.
    """
    from harness.results.tree import ResultsTree
    from harness.run.runner import BenchmarkSession

    ResultsTree(plan.results_root).require_writable(plan.system_name)
    check_hardware(profile, plan)
    session = BenchmarkSession(plan, profile, display)
    session.start()
    return session
