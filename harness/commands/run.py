"""`run_benchmark.py run` (the default subcommand): train NeuMF to the target on a system profile."""
from __future__ import annotations

import argparse

from harness.core.paths import DEFAULT_RESULTS_ROOT
from harness.core.errors import UserError



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
    p.add_argument("--system", required=True, help="system profile name (see `systems`) or path to a profile JSON")
    p.add_argument("--dataset", default="ml-20m", help="ml-20m (default), ml-25m, ml-1m, ml-100k, ml-latest-small, "
                                                      "synthetic-small, synthetic-ml20m, synthetic-ml20mxKxM")
    p.add_argument("--data-dir", help="folder with <name>.zip or an extracted <name>/ folder (else download)")
    p.add_argument("--cache-dir", help="prepared-data cache (default ~/.cache/ncf-benchmark or $NCF_CACHE_DIR)")
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


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="train NeuMF to the target HR@10 and write MLPerf logs (the default command)",
        description="Train NeuMF on MovieLens to the HR@10 target on a declared system profile, timing "
                    "every epoch and eval, and write MLPerf :::MLLOG logs in the submission layout.")
    add_run_arguments(p)
    p.add_argument("--runs", type=int, default=1, help="independent runs, back to back (default 1)")
    p.add_argument("--results-dir", help="submission root for results/ and systems/ (default: the project dir)")
    p.add_argument("--system-name", help="name of this system in the results (default: the profile name)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan and exit without training")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.set_defaults(handler=run)


def resolve(args: argparse.Namespace):
    """(profile, plan) for the parsed flags; user errors become UserError."""
    from harness.run.plan import resolve_plan
    from harness.run.profiles import load_profile

    profile = load_profile(args.system)
    name = getattr(args, "system_name", None)
    if name is not None and (not name or "/" in name or name.startswith(".")):
        raise UserError(f"--system-name must be a plain name without '/', got {name!r}.")
    runs = getattr(args, "runs", None)
    if runs is not None and runs < 1:
        raise UserError(f"--runs must be at least 1, got {runs}.")
    for name in ("eval_users", "steps_per_call", "mf_dim"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}.")
    for name in ("results_dir", "system_name", "runs"):
        if not hasattr(args, name):
            setattr(args, name, None)
    return profile, resolve_plan(profile, args, str(DEFAULT_RESULTS_ROOT))


def check_hardware(profile, plan, args: argparse.Namespace) -> None:
    """The pre-init hardware gate; the TPU it found (flag, profile or environment) goes into the plan."""
    from harness.distribute.hardware import check_declared_hardware

    found = check_declared_hardware(profile, tpu_name=args.tpu, worker_hosts=args.worker_hosts,
                                    task_index=args.task_index)
    plan.tpu = (found.get("tpu") or {}).get("name", plan.tpu)


def start_session(profile, plan, args: argparse.Namespace, display):
    """Gate the hardware, then load data and build TensorFlow's strategy: a session ready to run."""
    from harness.run.runner import BenchmarkSession

    check_hardware(profile, plan, args)
    session = BenchmarkSession(plan, profile, display)
    session.start()
    return session


def run(args: argparse.Namespace) -> int:
    from harness.run.plan import describe_plan
    from harness.run.progress import RunDisplay

    profile, plan = resolve(args)
    display = RunDisplay(quiet=args.quiet)
    display.plan(describe_plan(plan), title="NCF benchmark plan" + (" (dry run)" if args.dry_run else ""))
    if args.dry_run:
        return 0
    session = start_session(profile, plan, args, display)
    if session.topology.is_chief:
        from harness.results.tree import ResultsTree
        from harness.run.system_description import write_system_description
        from harness.run.profiles import resolved_description

        write_system_description(ResultsTree(plan.results_root), plan.system_name, resolved_description(profile))
    outcomes = []
    for i, seed in enumerate(plan.seeds):
        display.run_header(i, len(plan.seeds), seed)
        outcome = session.run_once(seed)
        display.run_done(outcome)
        outcomes.append(outcome)
    display.summary(outcomes)
    failed = [o for o in outcomes if o.verdict is not None and not o.verdict["passed"]]
    return 1 if failed else 0
