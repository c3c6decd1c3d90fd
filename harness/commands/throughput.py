"""`run_benchmark.py throughput`: its flags, their checks, and the report's tables.

Why apart from harness.measure.throughput: the measurements are a library that takes typed
options and returns a report; what a terminal shows of that report (rich tables, or one JSON
object) and which flag combinations make sense belong to the command alone.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, is_dataclass, replace
from typing import Any

import numpy as np

from harness.core.errors import UserError
from harness.measure.peer import PEER_ENV_HELP, parse_peer_env
from harness.measure.stopwatch import Timing
from harness.measure.throughput import ABLATION_ROUNDS, BASELINE_ROUNDS, MATMUL_SIZE, ThroughputOptions, measure
from harness.measure.training_rate import TrainingRate
from harness.run.flags import add_run_arguments, in_range, nonnegative_int, overrides_from, positive_int
from harness.run.plan import Range, RunPlan, describe_plan


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "throughput", help="measure training examples/s, eval pairs/s and where the time goes",
        description="Measure this harness's training and eval throughput on a system profile (warm-up "
                    "excluded), the time split of an epoch, and the ratio to this machine's fp32 matmul "
                    "rate; optionally against the plain reference path (--ablation) and the TF Model "
                    "Garden peer (--peer), measured in the same invocation.")
    add_run_arguments(p)
    p.add_argument("--steps", type=in_range(Range(2)), default=20,
                   help="timed training steps per measurement (>= 2; default 20)")
    p.add_argument("--eval-sample", type=positive_int, default=10000,
                   help="users evaluated for the eval rate (>= 1, x 1,000 candidates; default 10,000)")
    p.add_argument("--ablation", action="store_true",
                   help="also time the plain reference path and each fast path switched on in turn")
    p.add_argument("--peer", action="store_true",
                   help="run the TF Model Garden NCF peer (its own venv, built on first use) at our batch size "
                        "and XLA setting between two runs of ours")
    p.add_argument("--peer-rounds", type=positive_int, default=1, metavar="N",
                   help="with --peer: run the peer N >= 1 times, each between two runs of ours (default 1)")
    p.add_argument("--peer-env", action="append", default=[], metavar="KEY=VALUE", help="with --peer: " + PEER_ENV_HELP)
    p.add_argument("--check-eval", action="store_true",
                   help="also evaluate the sample with the plain reference eval on the same weights and compare")
    p.add_argument("--wait-quiet", type=nonnegative_int, default=0, metavar="SECONDS",
                   help="before measuring, wait up to SECONDS for other processes to use < 0.3 cores")
    p.add_argument("--op-profile", action="store_true",
                   help="also trace one compiled training step and show its time by XLA op and op category")
    p.add_argument("--baseline", metavar="SYSTEM",
                   help="also time profile SYSTEM on the same devices (e.g. --system cpu-bf16 --baseline cpu) in "
                        f"{BASELINE_ROUNDS} interleaved rounds with this one and report the training and eval ratios")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--dry-run", action="store_true", help="show what would run and exit without measuring")
    p.set_defaults(handler=throughput)


def throughput(args: argparse.Namespace) -> int:
    from harness.run.session import check_hardware, resolve

    if args.peer_rounds > 1 and not args.peer:   # --steps, --eval-sample, --peer-rounds: ranges in their types
        raise UserError(f"--peer-rounds must be at least 1 and needs --peer, got {args.peer_rounds}.")
    if args.peer_env and not args.peer:
        raise UserError("--peer-env needs --peer.")
    options = ThroughputOptions(steps=args.steps, eval_sample=args.eval_sample, ablation=args.ablation,
                                peer=args.peer, peer_rounds=args.peer_rounds,
                                peer_environment=parse_peer_env(args.peer_env),   # flags first, then what is on disk
                                check_eval=args.check_eval, wait_quiet=args.wait_quiet, op_profile=args.op_profile)
    profile, plan = resolve(overrides_from(args))
    baseline = _resolve_baseline(args, plan) if args.baseline else None
    settings = _planned_settings(plan)
    if args.dry_run:
        _print_dry_run(plan, settings, options, args.json, baseline[0] if baseline else None)
        return 0
    check_hardware(profile, plan)
    if baseline:
        check_hardware(baseline[1], baseline[0])
    report = measure(plan, profile, replace(options, baseline=baseline))
    if args.json:
        print(json.dumps(report, indent=2, default=_jsonable))
    else:
        _print_report(report)
    return 0


def _resolve_baseline(args: argparse.Namespace, plan: RunPlan) -> tuple[RunPlan, Any]:
    """(plan, profile) of --baseline SYSTEM: our flags and seed, checked to run on the same devices and
    threads (both share one TensorFlow runtime, data set and strategy)."""
    from harness.run.session import resolve

    base_profile, base_plan = resolve(replace(overrides_from(args), system=args.baseline, seed=plan.seeds[0]))

    def devices(p: RunPlan) -> str:
        return (f"{p.num_hosts} host(s) x {p.devices_per_host} {p.device}, strategy {p.strategy}, "
                f"threads {p.cpu_threads}")

    if devices(base_plan) != devices(plan):
        raise UserError(f"--baseline {args.baseline} must run on the same devices as {plan.system} "
                        f"({devices(plan)}), but it declares {devices(base_plan)}.")
    return base_plan, base_profile


def _planned_settings(plan: RunPlan) -> dict:
    from harness.train.fast.choice import planned_settings

    return planned_settings(plan.xla, plan.num_replicas, plan.device, plan.precision, plan.optimizer)


# ----------------------------------------------------------------------------------- output

def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):   # Timing, TrainingRate, ReadFloor
        return asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _cores(t: Timing | None) -> str:
    return "-" if t is None or t.foreign_cores is None else f"{t.foreign_cores:.2f}"


def _faults(rate: TrainingRate) -> str:
    return f"{rate.timing.page_faults / rate.steps:,.0f}"


def _print_report(report: dict) -> None:
    from rich.table import Table

    from harness.core.console import make_console

    console = make_console(highlight=False)
    trainer = report["trainer"]
    lazy = trainer.get("lazy_tables")
    optimizer = trainer["optimizer_impl"] + (f" (lazy tables: {', '.join(lazy)})" if lazy else "")
    console.print(f"[bold]throughput[/bold] {report['system']} on {report['dataset']}: batch {report['batch_size']:,}, "
                  f"{report['precision']}, {trainer['path']} step, optimizer {optimizer}, "
                  f"split first layer {'on' if trainer['split_first_layer'] else 'off'}, "
                  f"fast eval {'on' if trainer['fast_eval'] else 'off'}, XLA {'on' if trainer['xla'] else 'off'}")
    load = report["load_average_before"]
    console.print(f"machine: matmul fp32 {report['matmul_gflops']:.1f}, bf16 {report['matmul_gflops_bf16']:.1f} "
                  f"GFLOP/s ({MATMUL_SIZE}^3, TensorFlow's kernels); "
                  f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
                  "'foreign' = cores other processes used during a measurement")
    console.print("runtime environment: " + ", ".join(f"{k}={v}" for k, v in report["runtime_environment"].items())
                  + " (harness.tf_runtime; the peer runs without these unless --peer-env gives them)")
    table = Table(title="rates (warm-up excluded)")
    for col in ("measurement", "rate", "per step", "page faults per step", "foreign"):
        table.add_column(col, justify="right" if col != "measurement" else "left")
    peers = report.get("peer", [])
    for i, r in enumerate(report["training"]):   # in the order they ran: ours, peer, ours, ...
        name = "training" if not peers else f"training ({'before' if i == 0 else 'after'} peer run {max(i, 1)})"
        table.add_row(name, f"{r.examples_per_s:,.0f} ex/s", f"{r.ms_per_step:.0f} ms", _faults(r), _cores(r.timing))
        if i < len(peers):
            extra = "".join(f", {k}={v}" for k, v in peers[i].get("environment", {}).items())
            foreign = peers[i]["foreign_cores"]
            table.add_row(f"TF Model Garden peer run {i + 1} (XLA {'on' if peers[i]['xla'] else 'off'}{extra})",
                          f"{peers[i]['examples_per_s']:,.0f} ex/s", "", "",
                          "-" if foreign is None else f"{foreign:.2f}")
    ov = report["overlap"]
    table.add_row("training while next epoch's negatives generate", f"{ov['rate'].examples_per_s:,.0f} ex/s",
                  f"{ov['rate'].ms_per_step:.0f} ms", _faults(ov["rate"]), _cores(ov["rate"].timing))
    ev = report["eval"]
    table.add_row(f"eval ({ev['users']:,} users)", f"{ev['pairs_per_s']:,.0f} pairs/s", "", "", _cores(ev["timing"]))
    console.print(table)
    check = ev.get("reference_check")
    if check:
        console.print(f"eval check on the same weights: fast {check['fast_hits']:.0f} hits / {check['fast_weight']:.0f} users, "
                      f"reference {check['hits']:.0f} / {check['weight']:.0f} "
                      f"({'identical HR' if check['identical_hr'] else 'HR DIFFERS'}); NDCG relative difference "
                      f"{check['ndcg_relative_difference']:.1e}")
    split, epoch = report["split"], report["epoch_seconds"]
    table = Table(title="time split")
    for col in ("part", "per step", "per epoch"):
        table.add_column(col, justify="right" if col != "part" else "left")
    neg = report["negatives_and_shuffle"]
    table.add_row("negatives + shuffle (standalone, into the last epoch's memory)", "",
                  f"{neg.seconds:.2f} s ({neg.own_cores:.2f} cores)")
    floor = report["negatives_read_floor"]
    bitmap = "" if floor.bitmap_read_ns is None else f" and {floor.bitmap_reads:,} bitmap reads at {floor.bitmap_read_ns:.1f} ns"
    table.add_row(f"  {report['epoch_kernel']} kernel; its random reads alone", "",
                  f"{floor.seconds:.2f} s ({report['ratios']['negatives_vs_read_floor']:.2f}x): "
                  f"{floor.pair_reads:,} pair reads at {floor.pair_read_ns:.1f} ns{bitmap}")
    first = report["negatives_and_shuffle_first_epoch"]
    table.add_row("  into fresh memory (a run allocates its first epoch's during init)", "",
                  f"{first.seconds:.2f} s ({first.own_cores:.2f} cores)")
    cost = epoch["negatives_and_shuffle_cost_when_overlapped"]
    table.add_row("  cost to training when overlapped with it", "", "-" if cost is None else f"{cost:.2f} s")
    table.add_row("input (tf.data slicing, alone)", f"{split['input_ms']:.1f} ms", f"{epoch['input']:.1f} s")
    for key, label in (("forward_backward", "forward + backward"), ("optimizer", "optimizer (incl. lazy replay)")):
        if epoch.get(key) is not None:
            table.add_row(label, f"{split[key + '_ms']:.0f} ms", f"{epoch[key]:.1f} s")
    table.add_row(f"input wait (blocked in the iterator; traced, {split['input_wait_traced_step_ms']:.0f} ms/step)",
                  f"{split['input_wait_ms']:.2f} ms ({100 * split['input_wait_share']:.2f}%)", f"{epoch['input_wait']:.1f} s")
    table.add_row("input cost (pipeline vs in-memory batches, paired)",
                  f"{split['input_cost_ms']:.1f} ms ({100 * split['input_cost_share']:.1f}%; rounds "
                  + ", ".join(f"{ms:.0f}" for ms in split["input_cost_rounds_ms"]) + ")", f"{epoch['input_cost']:.1f} s")
    table.add_row("training step (through the pipeline)", f"{split['pipeline_step_ms']:.0f} ms", f"{epoch['training']:.0f} s")
    table.add_row("lazy-Adam catch-up before eval", "", f"{epoch['eval_catch_up']:.2f} s")
    table.add_row("eval, all users", "", f"{epoch['eval']:.1f} s")
    console.print(table)
    if "op_profile" in report:
        _print_op_profile(console, report["op_profile"])
    ratios = report["ratios"]
    console.print(f"work rate (reference FLOPs): training {ratios['training_reference_gflops']:.1f} GFLOP/s = "
                  f"{ratios['training_vs_matmul']:.2f} x {ratios['matmul_dtype']} matmul; eval "
                  f"{ratios['eval_reference_gflops']:.1f} GFLOP/s = {ratios['eval_vs_matmul']:.2f} x "
                  f"{ratios['matmul_dtype']} matmul")
    if report.get("baseline"):
        _print_baseline(console, report["system"], report["baseline"])
    if "training_vs_peer" in ratios:
        rounds = ratios["training_vs_peer_rounds"]
        each = f"; rounds: {', '.join(f'{r:.2f}x' for r in rounds)}" if len(rounds) > 1 else ""
        console.print(f"[bold]training vs TF Model Garden peer: {ratios['training_vs_peer']:.2f}x[/bold]"
                      f"{' (median)' if len(rounds) > 1 else ''}{each}")
        for i, peer in enumerate(report["peer"], 1):
            best = "-" if peer["best_interval"] is None else f"{peer['best_interval']:,.0f}"
            console.print(f"  peer run {i}: batch {peer['batch']:,}, {peer['logged_steps']} steps logged, "
                          f"best interval {best} ex/s; log {peer['log']}")
    if report.get("ablation"):
        table = Table(title=f"ablation (each fast path switched on in turn; medians of {ABLATION_ROUNDS} "
                            "interleaved rounds, x ref = median of per-round ratios)")
        for col in ("variant", "train ex/s", "x ref", "eval pairs/s", "x ref", "foreign"):
            table.add_column(col, justify="right" if col != "variant" else "left")
        for row in report["ablation"]:
            if "skipped" in row:
                table.add_row(row["variant"], "skipped", "", row["skipped"], "", "")
                continue
            table.add_row(row["variant"], f"{row['examples_per_s']:,.0f}", f"{row.get('training_x_reference', 1):.2f}",
                          f"{row['pairs_per_s']:,.0f}", f"{row.get('eval_x_reference', 1):.2f}",
                          f"{row['train_foreign_cores'] or 0:.2f}/{row['eval_foreign_cores'] or 0:.2f}")
        console.print(table)


def _print_baseline(console: Any, system: str, base: dict) -> None:
    """This profile against --baseline: per-profile medians, the ratios, the CPU and what they mean."""
    from rich.table import Table

    table = Table(title=f"{system} against --baseline {base['baseline']['system']} ({base['rounds']} interleaved "
                        f"rounds of {base['steps_per_round']} steps and one eval; medians)")
    for col in ("profile", "precision", "train ex/s", "eval pairs/s", "foreign"):
        table.add_column(col, justify="left" if col in ("profile", "precision") else "right")
    for row in (base["ours"], base["baseline"]):
        table.add_row(row["system"], row["precision"], f"{row['examples_per_s']:,.0f}", f"{row['pairs_per_s']:,.0f}",
                      f"{row['train_foreign_cores']:.2f}/{row['eval_foreign_cores']:.2f}")
    console.print(table)
    console.print(f"[bold]{system} vs {base['baseline']['system']}: training {base['training_ratio']:.2f}x, eval "
                  f"{base['eval_ratio']:.2f}x[/bold] (medians of per-round ratios)")
    found = ", ".join(base["bf16_instructions"]) or "none"
    console.print(f"CPU: {base['cpu']}; flags: {' '.join(base['cpu_flags']) or '-'}; bf16 instructions: {found}")
    targets = base["targets"]
    if targets is None:
        return
    wanted = f"training >= {targets['training']}x, eval >= {targets['eval']}x"
    if not base["meaningful_for_targets"]:
        console.print(f"[yellow]{base['note']} ({wanted}).[/yellow]")
        return
    met = base["training_ratio"] >= targets["training"] and base["eval_ratio"] >= targets["eval"]
    console.print(f"bf16 targets ({wanted}): {'met' if met else 'NOT met'}")


def _print_op_profile(console: Any, ops: dict) -> None:
    from rich.table import Table

    if not ops["available"]:
        console.print(f"op profile unavailable: {ops['reason']}")
        return
    table = Table(title=f"one fused training step by XLA op ({ops['step_ms']:.0f} ms wall, "
                        f"{ops['traced_ms']:.0f} ms traced; ops on two cores may overlap)")
    for col in ("category / op", "TF op", "shape", "ms per step", "share"):
        table.add_column(col, justify="right" if col in ("ms per step", "share") else "left", overflow="fold")
    for name, ms in ops["categories"].items():
        table.add_row(f"[bold]{name}[/bold]", "", "", f"{ms:.1f}", f"{100 * ms / ops['traced_ms']:.0f}%")
    for op in ops["top"]:
        table.add_row(f"  {op['name']}", op["op_type"], op["shape"].split("{")[0], f"{op['ms_per_step']:.1f}",
                      f"{100 * op['ms_per_step'] / ops['traced_ms']:.0f}%")
    console.print(table)


def _print_dry_run(plan: RunPlan, settings: dict, options: ThroughputOptions, as_json: bool,
                   baseline: RunPlan | None = None) -> None:
    from harness.run.progress import RunDisplay

    rows = describe_plan(plan)
    rows += [
        ("training step", f"{settings['path']} ({_step_shape(settings)})"),
        ("matrix products", settings["matmuls"]),
        ("optimizer implementation", settings["optimizer_impl"]),
        ("first MLP layer", "split: user and item halves once per distinct row (training), per user and per catalogue item (eval)"),
        ("eval ranking", "sort-free rank of the true item; output layer in float32"),
        ("loss scaling", settings["loss_scale"] or "none"),
        ("would measure", f"{options.steps} training steps, {options.eval_sample:,} eval users"
                          + (", ablation" if options.ablation else "") + (", TF Model Garden peer" if options.peer else "")
                          + (f", against {baseline.system} in {BASELINE_ROUNDS} interleaved rounds" if baseline else "")),
    ]
    if plan.device != "cpu":
        rows.append(("note", f"needs {plan.num_replicas} {plan.device.upper()} replica(s): measurable only where that "
                             "hardware is present"))
    if as_json:
        extra = {"baseline": baseline.to_dict()} if baseline else {}
        print(json.dumps({"plan": plan.to_dict(), "trainer": settings, **extra}, indent=2, default=str))
        return
    RunDisplay().plan(rows, title="throughput plan (dry run)")


def _step_shape(settings: dict) -> str:
    if settings["path"] != "fused":
        return "per-replica gradients, all-reduce, Adam via merge_call"
    if settings["matmuls"].startswith("TensorFlow (oneDNN)"):
        return "XLA programs for the rows read and the update, the products between them as TensorFlow ops"
    return "one XLA program per step"
