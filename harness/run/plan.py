"""Resolve what a benchmark run will do: profile + dataset defaults + command line -> `RunPlan`.

Resolution order for every hyperparameter (each value used is logged):
  1. the dataset's defaults (`reference.targets`);
  2. the system profile's optimizer and global batch, for full-size sets (ml-20m, ml-25m and the
     synthetic ml-20m-sized sets), where a profile's choice from docs/reference-facts.md §5 applies;
  3. the command's `PlanOverrides` (command-line flags, or values a measuring command sets).
The division is decided here too: closed only when every closed-division rule holds (docs/reference-facts.md
§6); anything else runs as open, with the reasons listed in the plan and the log.
No TensorFlow import: `--dry-run` must answer instantly.
"""
from __future__ import annotations

import math
import os
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.core.errors import UserError
from harness.data import synthetic
from harness.data.registry import get_spec
from harness.distribute.cluster import (DEFAULT_CLUSTER_PORT, ClusterRequest, WorkerCluster, describe_cluster,
                                        resolve_cluster)
from harness.distribute.hardware import bf16_verdict
from reference import constants
from reference.targets import DATASET_DEFAULTS, DatasetDefaults, dataset_defaults

FULL_SIZE_DATASETS = ("ml-20m", "ml-25m")
CLOSED_DATASET = "ml-20m"


@dataclass(frozen=True)
class PlanOverrides:
    """What a command asks of a run: the profile to load and every value it may override.

    Typed and frozen so that a command changing a value does it visibly, with
    `dataclasses.replace`, and a misspelt field fails at once. None means "the profile's or the
    dataset's value".
    """

    system: str
    dataset: str = CLOSED_DATASET
    data_dir: str | None = None
    cache_dir: str | None = None
    mirror: str | None = None
    seed: int | None = None
    runs: int | None = None
    max_epochs: int | None = None
    target: float | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    epsilon: float | None = None
    mf_dim: int | None = None
    layers: tuple[int, ...] | None = None
    eval_users: int | None = None
    steps_per_call: int | None = None
    xla: bool | None = None
    deterministic: bool = False
    allow_emulated_bf16: bool = False   # --allow-emulated-bf16: run bf16 on a CPU without bf16 instructions
    tpu: str | None = None
    worker_hosts: tuple[str, ...] | None = None
    task_index: int | None = None
    cluster: str = "auto"              # --cluster: auto, slurm, tf-config or flags
    cluster_port: int | None = None    # --cluster-port (Slurm workers' first port)
    results_dir: str | None = None
    system_name: str | None = None
    tensorboard_dir: str | None = None


def uses_profile_hyperparameters(dataset: str) -> bool:
    """Profiles carry ml-20m-scale hyperparameters; small sets keep their own defaults."""
    return dataset in FULL_SIZE_DATASETS or dataset.startswith("synthetic-ml20m")


@dataclass
class RunPlan:
    """Everything a run needs, resolved and validated, JSON-serialisable for logs and summaries."""

    system: str
    system_name: str
    dataset: str
    data_dir: str | None
    cache_dir: str | None
    mirror: str | None
    results_root: str
    runs: int
    seeds: list[int]
    seeds_drawn: bool
    batch_size: int
    learning_rate: float
    beta1: float
    beta2: float
    epsilon: float
    optimizer: str
    hyperparameter_source: str
    target: float
    target_status: str
    target_note: str
    max_epochs: int
    mf_dim: int
    layers: list[int]
    num_neg: int
    num_eval_negatives: int
    match_mlperf: bool
    precision: str
    xla: bool
    strategy: str
    device: str
    devices_per_host: int
    num_hosts: int
    num_replicas: int
    eval_users_per_replica: int
    steps_per_call: int
    cpu_threads: dict
    deterministic: bool
    tpu: str | None = None
    worker_hosts: list[str] | None = None
    task_index: int | None = None
    cluster_request: ClusterRequest = field(default_factory=ClusterRequest)
    cluster: WorkerCluster | None = None   # the workers and this task's place (harness.distribute.cluster)
    tensorboard_dir: str | None = None   # per-epoch scalars (harness.run.tensorboard)
    allow_emulated_bf16: bool = False    # the bf16 gate (harness.distribute.hardware.bf16_verdict)
    open_reasons: list[str] = field(default_factory=list)

    @property
    def division(self) -> str:
        return "open" if self.open_reasons else "closed"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["division"] = self.division
        return out

    def with_data_verification(self, verification: str) -> None:
        """Closed needs the published, checksum-verified ml-20m zip; learn that once data loads."""
        if self.dataset == CLOSED_DATASET and verification != "verified":
            reason = f"dataset is {verification}, not the checksum-verified ml-20m zip"
            if reason not in self.open_reasons:
                self.open_reasons.append(reason)


@dataclass(frozen=True)
class Range:
    """The values a numeric flag accepts, and the words a message names them with.

    Why one type: the argparse types of harness.run.flags (a typed flag) and `_check_overrides`
    (overrides a command builds itself) refuse the same values in the same words. NaN and the
    infinities lie outside every range, so a float flag never needs a check of its own for them.
    """

    low: int | float
    high: int | float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = True

    def contains(self, value: int | float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """E.g. "at least 1", "in 0..2147483647", "> 0 and finite", "in [0, 1)"."""
        if self.integer:
            return f"at least {self.low}" if self.high == math.inf else f"in {self.low}..{self.high}"
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g} and finite"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


# One seed range for every run of an invocation (run i uses seed + i), the one seeds are drawn from:
# non-negative and below 2^31, which every consumer takes (the samplers' 64-bit stream keys, the
# model's int64 tf.random seed, any int32 seed), where 2^64 used to fail only after TensorFlow's
# start-up (docs/architecture.md, command line).
SEED_LIMIT = 2**31
AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
RUNS = Range(1, SEED_LIMIT - 1)    # one seed each below SEED_LIMIT
POSITIVE = Range(0, low_open=True, integer=False)
FRACTION = Range(0, 1, high_open=True, integer=False)            # Adam's beta1 and beta2
TARGET_HR = Range(0, 1, low_open=True, integer=False)


def seed_range(runs: int = 1) -> Range:
    """First seeds of `runs` runs (seeds seed .. seed + runs - 1) that all stay below SEED_LIMIT."""
    return Range(0, SEED_LIMIT - runs)


def check_range(flag: str, value: int | float | None, allowed: Range) -> None:
    """UserError naming `allowed` unless `value` is None (not given) or inside it."""
    if value is not None and not allowed.contains(value):
        raise UserError(f"{flag} must be {allowed.describe()}, got {value}.")


def check_seed(seed: int | None, runs: int, runs_flag: str | None = "--runs") -> None:
    """The first `--seed` of `runs` runs, checked against the range they share (why: SEED_LIMIT).

    `runs_flag` is the flag that set `runs`, named in the message; None for a command without one.
    """
    allowed = seed_range(runs)
    if seed is not None and not allowed.contains(seed):
        rule = f" (seed + runs - 1 < 2^31 with {runs_flag} {runs})" if runs_flag else ""
        raise UserError(f"--seed must be {allowed.describe()}{rule}, got {seed}.")


def _defaults_for(dataset: str) -> DatasetDefaults:
    """The dataset's defaults; an unknown name gets the message the `data` command gives for it."""
    if synthetic.is_synthetic(dataset):
        synthetic.parse_name(dataset)   # UserError for a malformed name, e.g. synthetic-ml20mx0x1
    try:
        return dataset_defaults(dataset)
    except KeyError:
        pass
    if not synthetic.is_synthetic(dataset):
        get_spec(dataset)               # UserError listing the known datasets for an unknown name
    with_defaults = ", ".join([*DATASET_DEFAULTS, "synthetic-ml20mx<k>x<m>"])
    raise UserError(f"No defaults for dataset {dataset!r}; runs take {with_defaults}.")


def _check_overrides(overrides: PlanOverrides) -> None:
    """The overrides' own ranges, checked before any default is looked up, data read or TF imported.

    The argparse types refuse most of these while parsing; this covers overrides a command builds
    itself and the one range that depends on two flags (seed and runs).
    """
    name = overrides.system_name
    if name is not None and (not name or "/" in name or name.startswith(".")):
        raise UserError(f"--system-name must be a plain name without '/', got {name!r}.")
    o = overrides
    for flag, value, allowed in (
            ("--runs", o.runs, RUNS), ("--max-epochs", o.max_epochs, AT_LEAST_1), ("--target", o.target, TARGET_HR),
            ("--batch-size", o.batch_size, AT_LEAST_1), ("--learning-rate", o.learning_rate, POSITIVE),
            ("--beta1", o.beta1, FRACTION), ("--beta2", o.beta2, FRACTION), ("--epsilon", o.epsilon, POSITIVE),
            ("--mf-dim", o.mf_dim, AT_LEAST_1), ("--eval-users", o.eval_users, AT_LEAST_1),
            ("--steps-per-call", o.steps_per_call, AT_LEAST_1), ("--task-index", o.task_index, AT_LEAST_0)):
        check_range(flag, value, allowed)
    if o.layers is not None and (len(o.layers) < 2 or not all(AT_LEAST_1.contains(v) for v in o.layers)):
        raise UserError(f"--layers must be at least two sizes, each at least 1, got {list(o.layers)}.")
    check_seed(o.seed, _given(o.runs, 1), runs_flag=None if o.runs is None else "--runs")


def _given(value: Any, default: Any) -> Any:
    """The override unless it is None: 0 is a value (which `_check_overrides` refuses), never "the default"."""
    return default if value is None else value


def resolve_plan(profile: Any, overrides: PlanOverrides, default_root: str) -> RunPlan:
    """Combine the profile, the dataset defaults and `overrides` into a validated plan.

    `default_root` is the submission root when the overrides name none.
    """
    _check_overrides(overrides)
    dataset = overrides.dataset
    defaults = _defaults_for(dataset)
    hs = profile.harness
    opt = hs.optimizer
    use_profile = uses_profile_hyperparameters(dataset)
    batch = _given(overrides.batch_size, hs.global_batch_size if use_profile else defaults.batch_size)

    def adam(name: str) -> float:
        """The override, else the profile's Adam constant (full-size sets) or the dataset's."""
        return _given(getattr(overrides, name), getattr(opt if use_profile else defaults, name))

    lr, beta1, beta2, eps = adam("learning_rate"), adam("beta1"), adam("beta2"), adam("epsilon")
    source = opt.source if use_profile else defaults.source
    if any(getattr(overrides, name) is not None
           for name in ("batch_size", "learning_rate", "beta1", "beta2", "epsilon")):
        source += " with command-line overrides"
    replicas = hs.devices_per_host * hs.num_hosts
    if batch % replicas:
        raise UserError(f"The global batch {batch} does not divide evenly over {replicas} replicas.")
    layers = [int(x) for x in _given(overrides.layers, constants.MLP_LAYERS)]
    if layers[0] % 2:
        raise UserError(f"--layers must start with an even size (user and item halves), got {layers[0]}.")
    mf_dim = _given(overrides.mf_dim, constants.MF_DIM)
    runs = _given(overrides.runs, 1)
    if overrides.seed is not None:
        seeds, drawn = [overrides.seed + i for i in range(runs)], False
    else:
        seeds, drawn = [secrets.randbelow(SEED_LIMIT - runs) for _ in range(runs)], True

    open_reasons: list[str] = []
    if dataset != CLOSED_DATASET:
        open_reasons.append(f"dataset {dataset} is not ml-20m")
    if overrides.target is not None and overrides.target != constants.MLPERF_TARGET_HR:
        open_reasons.append(f"target {overrides.target} is not the MLPerf {constants.MLPERF_TARGET_HR}")
    if mf_dim != constants.MF_DIM or tuple(layers) != constants.MLP_LAYERS:
        open_reasons.append("the model differs from the reference (mf_dim 64, layers 256,256,128,64)")
    if opt.name not in constants.CLOSED_OPTIMIZERS:
        open_reasons.append(f"optimizer {opt.name} is not allowed in the closed division")
    cluster_request, cluster = _cluster(hs, overrides)

    return RunPlan(
        system=profile.name, system_name=overrides.system_name or profile.name, dataset=dataset,
        data_dir=overrides.data_dir, cache_dir=overrides.cache_dir, mirror=overrides.mirror,
        results_root=overrides.results_dir or default_root, runs=runs, seeds=seeds, seeds_drawn=drawn,
        batch_size=int(batch), learning_rate=float(lr), beta1=float(beta1), beta2=float(beta2),
        epsilon=float(eps), optimizer=opt.name, hyperparameter_source=source,
        target=float(overrides.target if overrides.target is not None else defaults.target_hr),
        target_status="command line" if overrides.target is not None else defaults.target_status,
        target_note="" if overrides.target is not None else defaults.target_note,
        max_epochs=int(_given(overrides.max_epochs, hs.max_epochs if use_profile else defaults.max_epochs)),
        mf_dim=int(mf_dim), layers=layers, num_neg=constants.NUM_NEG,
        num_eval_negatives=constants.NUM_EVAL_NEGATIVES, match_mlperf=True,
        precision=hs.precision, xla=bool(hs.xla if overrides.xla is None else overrides.xla),
        strategy=hs.strategy, device=hs.device, devices_per_host=hs.devices_per_host,
        num_hosts=hs.num_hosts, num_replicas=replicas,
        eval_users_per_replica=int(_given(overrides.eval_users, hs.eval_batch_users)),
        steps_per_call=int(_given(overrides.steps_per_call, hs.steps_per_call)),
        cpu_threads=dict(hs.cpu_threads), deterministic=bool(overrides.deterministic),
        tpu=overrides.tpu, worker_hosts=list(overrides.worker_hosts) if overrides.worker_hosts else None,
        task_index=overrides.task_index, cluster_request=cluster_request, cluster=cluster,
        tensorboard_dir=overrides.tensorboard_dir, allow_emulated_bf16=bool(overrides.allow_emulated_bf16),
        open_reasons=open_reasons,
    )


def _cluster(hs: Any, overrides: PlanOverrides) -> tuple[ClusterRequest, WorkerCluster | None]:
    """The --cluster request and the workers it finds in the flags and the environment (read here,
    without TensorFlow, so the dry run shows them), for the one strategy that runs on a cluster."""
    request = ClusterRequest(overrides.cluster, _given(overrides.cluster_port, DEFAULT_CLUSTER_PORT))
    if hs.strategy != "multi_worker_mirrored":
        return request, None
    return request, resolve_cluster(request, overrides.worker_hosts, overrides.task_index, hs.num_hosts, os.environ)


def _cluster_rows(plan: RunPlan) -> list[tuple[str, str]]:
    """The cluster row, for the strategy that runs on a cluster."""
    if plan.strategy != "multi_worker_mirrored":
        return []
    return [("cluster", describe_cluster(plan.cluster, plan.cluster_request, plan.num_hosts))]


def _bf16_rows(plan: RunPlan) -> list[tuple[str, str]]:
    """The bf16 gate's verdict, for plans that compute in bf16 on a CPU (the dry run shows it too)."""
    verdict = bf16_verdict(plan.precision, plan.device, plan.allow_emulated_bf16)
    return [("bf16 instructions", verdict.describe())] if verdict.needed else []


def describe_plan(plan: RunPlan) -> list[tuple[str, str]]:
    """(label, value) rows for `--dry-run` and the run header."""
    seeds = ", ".join(str(s) for s in plan.seeds[:6]) + (" ..." if len(plan.seeds) > 6 else "")
    return [
        ("system", f"{plan.system}" + (f" (results as {plan.system_name})" if plan.system_name != plan.system else "")),
        ("hardware", f"{plan.num_hosts} host(s) x {plan.devices_per_host} {plan.device}, strategy {plan.strategy}, "
                     f"{plan.num_replicas} replica(s)"),
        *_cluster_rows(plan),
        ("dataset", plan.dataset),
        ("division", plan.division + ("" if not plan.open_reasons else ": " + "; ".join(plan.open_reasons))),
        ("target", f"HR@10 >= {plan.target} ({plan.target_status}"
                   + (f": {plan.target_note})" if plan.target_note else ")")),
        ("model", f"NeuMF mf_dim {plan.mf_dim}, layers {plan.layers}"),
        ("optimizer", f"{plan.optimizer} lr {plan.learning_rate:g} beta1 {plan.beta1:g} beta2 {plan.beta2:g} "
                      f"epsilon {plan.epsilon:g}"),
        ("hyperparameters from", plan.hyperparameter_source),
        ("global batch", f"{plan.batch_size} ({plan.batch_size // plan.num_replicas} per replica), "
                         f"{plan.steps_per_call} steps per compiled call"),
        ("eval", f"{plan.num_eval_negatives} negatives + true item last, match_mlperf, "
                 f"{plan.eval_users_per_replica} users per replica step"),
        ("precision", f"{plan.precision}, XLA {'on' if plan.xla else 'off'}"),
        *_bf16_rows(plan),
        ("runs", f"{plan.runs} (seeds {seeds}{', drawn fresh' if plan.seeds_drawn else ''}), "
                 f"max {plan.max_epochs} epochs"),
        ("results", f"{plan.results_root}/results/{plan.system_name}/ncf/"),
        ("tensorboard", f"{plan.tensorboard_dir}/{plan.system_name}/result_<n>/" if plan.tensorboard_dir else "off"),
    ]
