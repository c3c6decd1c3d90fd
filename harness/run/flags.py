"""The command-line flags of a run plan, and their translation into `PlanOverrides`.

Why here and not in a command: `run`, `throughput` and `calibrate` take the same plan flags, and
commands never import each other, so the flags live in the layer that owns the plan. A command
adds them with `add_run_arguments`, turns the parsed flags into typed overrides once with
`overrides_from`, and from then on changes values only with `dataclasses.replace`.
"""
from __future__ import annotations

import argparse

from harness.run.plan import PlanOverrides

SYSTEM_HELP = "system profile name (see `systems`) or path to a profile JSON"
CACHE_DIR_HELP = "prepared-data cache (default ~/.cache/ncf-benchmark or $NCF_CACHE_DIR)"

# Flags some commands add themselves (`run` all three, `calibrate` its own --results-dir); absent
# from a command's flags, they stay None.
COMMAND_OWN_FIELDS = ("runs", "results_dir", "system_name")


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
    p.add_argument("--seed", type=int, help="run i uses seed SEED+i (default: a fresh seed per run)")
    p.add_argument("--max-epochs", type=int, help="stop (aborted) after this many epochs")
    p.add_argument("--target", type=float, help="override the HR@10 target (makes the run open division)")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--beta1", type=float)
    p.add_argument("--beta2", type=float)
    p.add_argument("--epsilon", type=float)
    p.add_argument("--mf-dim", type=int, help="GMF width (changing it makes the run open division)")
    p.add_argument("--layers", type=_layers, help="MLP sizes, e.g. 256,256,128,64 (changing them: open division)")
    p.add_argument("--eval-users", type=int, help="users per replica per eval step (1,000 candidates each)")
    p.add_argument("--steps-per-call", type=int, help="training steps per compiled call")
    xla = p.add_mutually_exclusive_group()
    xla.add_argument("--xla", dest="xla", action="store_true", default=None, help="force XLA on")
    xla.add_argument("--no-xla", dest="xla", action="store_false", help="force XLA off")
    p.add_argument("--deterministic", action="store_true", help="enable TensorFlow op determinism")
    p.add_argument("--tpu", help="TPU name or grpc:// address for TPUClusterResolver (else $TPU_NAME)")
    p.add_argument("--worker-hosts", type=_hosts, help="host:port list of all workers (multi-host profiles)")
    p.add_argument("--task-index", type=int, help="this worker's index in --worker-hosts")


def overrides_from(args: argparse.Namespace) -> PlanOverrides:
    """The typed overrides of flags parsed by a parser that `add_run_arguments` built."""
    own = {name: getattr(args, name, None) for name in COMMAND_OWN_FIELDS}
    return PlanOverrides(
        system=args.system, dataset=args.dataset, data_dir=args.data_dir, cache_dir=args.cache_dir,
        mirror=args.mirror, seed=args.seed, max_epochs=args.max_epochs, target=args.target,
        batch_size=args.batch_size, learning_rate=args.learning_rate, beta1=args.beta1, beta2=args.beta2,
        epsilon=args.epsilon, mf_dim=args.mf_dim, layers=None if args.layers is None else tuple(args.layers),
        eval_users=args.eval_users, steps_per_call=args.steps_per_call, xla=args.xla,
        deterministic=args.deterministic, tpu=args.tpu,
        worker_hosts=None if args.worker_hosts is None else tuple(args.worker_hosts),
        task_index=args.task_index, **own)
