"""The command-line flags of a run plan, and their translation into `PlanOverrides`.

Why here and not in a command: `run`, `throughput` and `calibrate` take the same plan flags, and
commands never import each other, so the flags live in the layer that owns the plan. A command
adds them with `add_run_arguments`, turns the parsed flags into typed overrides once with
`overrides_from`, and from then on changes values only with `dataclasses.replace`.
"""
from __future__ import annotations

import argparse
from typing import Callable

from harness.distribute.cluster import CLUSTER_SOURCES, DEFAULT_CLUSTER_PORT
from harness.run.plan import (AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, TARGET_HR, PlanOverrides, Range,
                              seed_range)

SYSTEM_HELP = "system profile name (see `systems`) or path to a profile JSON"
CACHE_DIR_HELP = "prepared-data cache (default ~/.cache/ncf-benchmark or $NCF_CACHE_DIR)"

# Flags some commands add themselves (`run` all four, `calibrate` its own --results-dir); absent
# from a command's flags, they stay None.
COMMAND_OWN_FIELDS = ("runs", "results_dir", "system_name", "tensorboard_dir")


def in_range(allowed: Range) -> Callable[[str], int | float]:
    """An argparse type: the flag's text as a number inside `allowed`, refused at parse time otherwise.

    Why at parse time: a bad value then fails before any data, TensorFlow or results work, and
    0 can never slip through as "use the default".
    """
    parse = int if allowed.integer else float

    def convert(text: str) -> int | float:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if allowed.integer else 'a number'}, "
                                             f"got {text!r}") from None
        if not allowed.contains(value):
            raise argparse.ArgumentTypeError(f"must be {allowed.describe()}, got {text}")
        return value

    return convert


positive_int = in_range(AT_LEAST_1)
nonnegative_int = in_range(AT_LEAST_0)
positive_float = in_range(POSITIVE)      # finite: NaN and inf are refused
fraction = in_range(FRACTION)
one_seed = in_range(seed_range())        # one seed; a run's --seed is checked with --runs in the plan


def _layers(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if len(values) < 2 or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected at least two positive sizes, got {text!r}")
    return values


def _hosts(text: str) -> list[str]:
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    if not hosts or any(":" not in h for h in hosts):
        raise argparse.ArgumentTypeError(f"expected host:port[,host:port...], got {text!r}")
    return hosts


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by `run` and the commands that resolve a run plan (throughput, calibrate)."""
    p.add_argument("--system", required=True, help=SYSTEM_HELP)
    p.add_argument("--dataset", default="ml-20m", help="ml-20m (default), ml-25m, ml-1m, ml-100k, ml-latest-small, "
                                                      "synthetic-small, synthetic-ml20m, synthetic-ml20mxKxM")
    p.add_argument("--data-dir", help="folder with <name>.zip or an extracted <name>/ folder (else download)")
    p.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    p.add_argument("--mirror", help="base URL of a MovieLens mirror (default GroupLens, or $NCF_DATA_MIRROR)")
    p.add_argument("--seed", type=int, help="run i uses seed SEED+i, all below 2^31 (default: a fresh seed per run)")
    p.add_argument("--max-epochs", type=positive_int, help="stop (aborted) after this many epochs (>= 1)")
    p.add_argument("--target", type=in_range(TARGET_HR),
                   help="override the HR@10 target, in (0, 1] (makes the run open division)")
    p.add_argument("--batch-size", type=positive_int, help="global batch size (>= 1, a multiple of the replicas)")
    p.add_argument("--learning-rate", type=positive_float, help="Adam learning rate (> 0)")
    p.add_argument("--beta1", type=fraction, help="Adam beta1, in [0, 1)")
    p.add_argument("--beta2", type=fraction, help="Adam beta2, in [0, 1)")
    p.add_argument("--epsilon", type=positive_float, help="Adam epsilon (> 0)")
    p.add_argument("--mf-dim", type=positive_int, help="GMF width (>= 1; changing it makes the run open division)")
    p.add_argument("--layers", type=_layers, help="MLP sizes, e.g. 256,256,128,64 (changing them: open division)")
    p.add_argument("--eval-users", type=positive_int, help="users per replica per eval step (>= 1; 1,000 candidates each)")
    p.add_argument("--steps-per-call", type=positive_int, help="training steps per compiled call (>= 1)")
    xla = p.add_mutually_exclusive_group()
    xla.add_argument("--xla", dest="xla", action="store_true", default=None, help="force XLA on")
    xla.add_argument("--no-xla", dest="xla", action="store_false", help="force XLA off")
    p.add_argument("--deterministic", action="store_true", help="enable TensorFlow op determinism")
    p.add_argument("--allow-emulated-bf16", action="store_true",
                   help="run a bf16 CPU profile (cpu-bf16) on a CPU without AVX512_BF16 or AMX-BF16, where bf16 is "
                        "emulated and slower than fp32 (tests, calibrate)")
    p.add_argument("--tpu", help="TPU name or grpc:// address for TPUClusterResolver (else $TPU_NAME)")
    p.add_argument("--worker-hosts", type=_hosts, help="host:port list of all workers (multi-host profiles)")
    p.add_argument("--task-index", type=nonnegative_int, help="this worker's index in --worker-hosts")
    p.add_argument("--cluster", choices=CLUSTER_SOURCES, default="auto",
                   help="where a multi-host run finds its workers: --worker-hosts (flags), TF_CONFIG (tf-config), "
                        "the srun step (slurm); auto (default) takes the first present, Slurm only for num_hosts > 1")
    p.add_argument("--cluster-port", type=positive_int,
                   help=f"Slurm: the port of each node's first task, the k-th uses PORT+k (default {DEFAULT_CLUSTER_PORT})")


def overrides_from(args: argparse.Namespace) -> PlanOverrides:
    """The typed overrides of flags parsed by a parser that `add_run_arguments` built."""
    own = {name: getattr(args, name, None) for name in COMMAND_OWN_FIELDS}
    return PlanOverrides(
        system=args.system, dataset=args.dataset, data_dir=args.data_dir, cache_dir=args.cache_dir,
        mirror=args.mirror, seed=args.seed, max_epochs=args.max_epochs, target=args.target,
        batch_size=args.batch_size, learning_rate=args.learning_rate, beta1=args.beta1, beta2=args.beta2,
        epsilon=args.epsilon, mf_dim=args.mf_dim, layers=None if args.layers is None else tuple(args.layers),
        eval_users=args.eval_users, steps_per_call=args.steps_per_call, xla=args.xla,
        deterministic=args.deterministic, allow_emulated_bf16=args.allow_emulated_bf16, tpu=args.tpu,
        worker_hosts=None if args.worker_hosts is None else tuple(args.worker_hosts),
        task_index=args.task_index, cluster=args.cluster, cluster_port=args.cluster_port, **own)
