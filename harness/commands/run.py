"""`run_benchmark.py run` (the default subcommand): train NeuMF to the target on a system profile."""
from __future__ import annotations

import argparse

from harness.run.flags import add_run_arguments, in_range, overrides_from
from harness.run.plan import RUNS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="train NeuMF to the target HR@10 and write MLPerf logs (the default command)",
        description="Train NeuMF on MovieLens to the HR@10 target on a declared system profile, timing "
                    "every epoch and eval, and write MLPerf :::MLLOG logs in the submission layout.")
    add_run_arguments(p)
    p.add_argument("--runs", type=in_range(RUNS), default=1,
                   help="independent runs, back to back (default 1; seed + runs - 1 < 2^31)")
    p.add_argument("--results-dir", help="submission root for results/ and systems/ (default: the project dir)")
    p.add_argument("--system-name", help="name of this system in the results (default: the profile name)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan and exit without training")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument("--tensorboard", dest="tensorboard_dir", metavar="DIR",
                   help="also write per-epoch TensorBoard scalars to DIR/<system name>/result_<n>/ (default off)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.run.plan import describe_plan
    from harness.run.progress import RunDisplay
    from harness.run.session import resolve, start_session

    profile, plan = resolve(overrides_from(args))
    display = RunDisplay(quiet=args.quiet)
    display.plan(describe_plan(plan), title="NCF benchmark plan" + (" (dry run)" if args.dry_run else ""))
    if args.dry_run:
        return 0
    if plan.tensorboard_dir:
        from harness.core.writable import require_writable_dir

        require_writable_dir(plan.tensorboard_dir, "--tensorboard")
    session = start_session(profile, plan, display)
    if session.topology.is_chief:
        from harness.results.tree import ResultsTree
        from harness.run.system_description import write_system_description
        from harness.run.profiles import resolved_description

        write_system_description(ResultsTree(plan.results_root), plan.system_name,
                                 resolved_description(profile, system_name=plan.system_name, division=plan.division))
    outcomes = []
    for i, seed in enumerate(plan.seeds):
        display.run_header(i, len(plan.seeds), seed)
        outcome = session.run_once(seed)
        display.run_done(outcome)
        outcomes.append(outcome)
    display.summary(outcomes)
    failed = [o for o in outcomes if o.verdict is not None and not o.verdict["passed"]]
    return 1 if failed else 0
