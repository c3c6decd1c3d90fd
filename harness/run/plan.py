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

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.core.errors import UserError
from reference import constants
from reference.targets import dataset_defaults

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
    tpu: str | None = None
    worker_hosts: tuple[str, ...] | None = None
    task_index: int | None = None
    results_dir: str | None = None
    system_name: str | None = None


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


def _positive(name: str, value: float | int | None) -> None:
    if value is not None and not value > 0:
        raise UserError(f"{name} must be positive, got {value}.")


def _fraction(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value < 1.0:
        raise UserError(f"{name} must be in [0, 1), got {value}.")


def _check_overrides(overrides: PlanOverrides) -> None:
    """The overrides' own ranges, checked before any default is looked up."""
    name = overrides.system_name
    if name is not None and (not name or "/" in name or name.startswith(".")):
        raise UserError(f"--system-name must be a plain name without '/', got {name!r}.")
    if overrides.runs is not None and overrides.runs < 1:
        raise UserError(f"--runs must be at least 1, got {overrides.runs}.")
    for flag, value in (("--eval-users", overrides.eval_users), ("--steps-per-call", overrides.steps_per_call),
                        ("--mf-dim", overrides.mf_dim)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be positive, got {value}.")


def resolve_plan(profile: Any, overrides: PlanOverrides, default_root: str) -> RunPlan:
    """Combine the profile, the dataset defaults and `overrides` into a validated plan.

    `default_root` is the submission root when the overrides name none.
    """
    _check_overrides(overrides)
    dataset = overrides.dataset
    try:
        defaults = dataset_defaults(dataset)
    except KeyError:
        raise UserError(f"No defaults for dataset {dataset!r}.") from None
    hs = profile.harness
    opt = hs.optimizer
    use_profile = uses_profile_hyperparameters(dataset)
    batch = overrides.batch_size or (hs.global_batch_size if use_profile else defaults.batch_size)

    def adam(name: str) -> float:
        """The override, else the profile's Adam constant (full-size sets) or the dataset's."""
        value = getattr(overrides, name)
        return value if value is not None else getattr(opt if use_profile else defaults, name)

    lr, beta1, beta2, eps = adam("learning_rate"), adam("beta1"), adam("beta2"), adam("epsilon")
    source = opt.source if use_profile else defaults.source
    if any(getattr(overrides, name) is not None
           for name in ("batch_size", "learning_rate", "beta1", "beta2", "epsilon")):
        source += " with command-line overrides"
    for name, value in (("--batch-size", batch), ("--learning-rate", lr), ("--epsilon", eps),
                        ("--max-epochs", overrides.max_epochs), ("--runs", overrides.runs)):
        _positive(name, value)
    _fraction("--beta1", beta1)
    _fraction("--beta2", beta2)
    if overrides.target is not None and not 0.0 < overrides.target <= 1.0:
        raise UserError(f"--target must be in (0, 1], got {overrides.target}.")
    replicas = hs.devices_per_host * hs.num_hosts
    if batch % replicas:
        raise UserError(f"The global batch {batch} does not divide evenly over {replicas} replicas.")
    layers = [int(x) for x in (overrides.layers or constants.MLP_LAYERS)]
    if layers[0] % 2:
        raise UserError(f"--layers must start with an even size (user and item halves), got {layers[0]}.")
    mf_dim = overrides.mf_dim or constants.MF_DIM
    runs = overrides.runs or 1
    if overrides.seed is not None:
        seeds, drawn = [overrides.seed + i for i in range(runs)], False
    else:
        seeds, drawn = [secrets.randbelow(2**31 - runs) for _ in range(runs)], True

    open_reasons: list[str] = []
    if dataset != CLOSED_DATASET:
        open_reasons.append(f"dataset {dataset} is not ml-20m")
    if overrides.target is not None and overrides.target != constants.MLPERF_TARGET_HR:
        open_reasons.append(f"target {overrides.target} is not the MLPerf {constants.MLPERF_TARGET_HR}")
    if mf_dim != constants.MF_DIM or tuple(layers) != constants.MLP_LAYERS:
        open_reasons.append("the model differs from the reference (mf_dim 64, layers 256,256,128,64)")
    if opt.name not in constants.CLOSED_OPTIMIZERS:
        open_reasons.append(f"optimizer {opt.name} is not allowed in the closed division")

    return RunPlan(
        system=profile.name, system_name=overrides.system_name or profile.name, dataset=dataset,
        data_dir=overrides.data_dir, cache_dir=overrides.cache_dir, mirror=overrides.mirror,
        results_root=overrides.results_dir or default_root, runs=runs, seeds=seeds, seeds_drawn=drawn,
        batch_size=int(batch), learning_rate=float(lr), beta1=float(beta1), beta2=float(beta2),
        epsilon=float(eps), optimizer=opt.name, hyperparameter_source=source,
        target=float(overrides.target if overrides.target is not None else defaults.target_hr),
        target_status="command line" if overrides.target is not None else defaults.target_status,
        target_note="" if overrides.target is not None else defaults.target_note,
        max_epochs=int(overrides.max_epochs or (hs.max_epochs if use_profile else defaults.max_epochs)),
        mf_dim=int(mf_dim), layers=layers, num_neg=constants.NUM_NEG,
        num_eval_negatives=constants.NUM_EVAL_NEGATIVES, match_mlperf=True,
        precision=hs.precision, xla=bool(hs.xla if overrides.xla is None else overrides.xla),
        strategy=hs.strategy, device=hs.device, devices_per_host=hs.devices_per_host,
        num_hosts=hs.num_hosts, num_replicas=replicas,
        eval_users_per_replica=int(overrides.eval_users or hs.eval_batch_users),
        steps_per_call=int(overrides.steps_per_call or hs.steps_per_call),
        cpu_threads=dict(hs.cpu_threads), deterministic=bool(overrides.deterministic),
        tpu=overrides.tpu, worker_hosts=list(overrides.worker_hosts) if overrides.worker_hosts else None,
        task_index=overrides.task_index, open_reasons=open_reasons,
    )


def describe_plan(plan: RunPlan) -> list[tuple[str, str]]:
    """(label, value) rows for `--dry-run` and the run header."""
    seeds = ", ".join(str(s) for s in plan.seeds[:6]) + (" ..." if len(plan.seeds) > 6 else "")
    return [
        ("system", f"{plan.system}" + (f" (results as {plan.system_name})" if plan.system_name != plan.system else "")),
        ("hardware", f"{plan.num_hosts} host(s) x {plan.devices_per_host} {plan.device}, strategy {plan.strategy}, "
                     f"{plan.num_replicas} replica(s)"),
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
        ("runs", f"{plan.runs} (seeds {seeds}{', drawn fresh' if plan.seeds_drawn else ''}), "
                 f"max {plan.max_epochs} epochs"),
        ("results", f"{plan.results_root}/results/{plan.system_name}/ncf/"),
    ]
