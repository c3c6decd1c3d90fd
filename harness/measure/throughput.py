"""What `run_benchmark.py throughput` measures: how fast this harness trains and evaluates on a system profile.

Measures, with warm-up (tracing, XLA compilation, the first steps) excluded:
  * training examples/s through the real input pipeline and the profile's Trainer settings;
  * eval candidate pairs/s (after the lazy-Adam catch-up, which is timed on its own);
  * the time split of an epoch: negatives and shuffling, input (tf.data slicing), forward and
    backward, optimizer, eval, and input wait (how much longer a step takes when fed by the
    pipeline than when its batch is already in memory), plus the cost of generating the next
    epoch's negatives while training (the runner overlaps them);
  * this machine's fp32 and bf16 matmul rates (a large tf.matmul, TensorFlow's own kernels) in the
    same invocation, and the ratio of the work done (counted as the reference model's FLOPs,
    docs/reference-facts.md §4) to the rate of the profile's own precision.
Optional: `--ablation` times the plain reference path and each fast path switched on in turn;
`--peer` runs the TF Model Garden NCF peer (harness.measure.peer, in a venv of its own built on
first use) at the same batch size and XLA setting between two measurements of ours and reports
the ratio; `--baseline SYSTEM` times this profile and another (e.g. cpu-bf16 against cpu) in
interleaved rounds and reports the medians of the per-round ratios; `--peer-rounds N` takes N turns (ours, peer, ours, peer, ..., ours) and reports each
peer run against the two measurements of ours around it, and the median of those ratios: the
peer's rate and ours drift independently by ±15% between minutes here, so one turn says as much
about the minute as about the software. Performance claims are ratios against
baselines measured in the same invocation; each measurement also reports the CPU time other
processes used meanwhile ("foreign cores"), because on a shared machine that is what moves
absolute numbers.
`--dry-run` prints what would run (how GPU and TPU profiles would be set up) without measuring.
The command's flags and tables are harness.commands.throughput; the time split of a step is
harness.measure.time_split, the timed training steps harness.measure.training_rate.
"""
from __future__ import annotations

import copy
import gc
import os
import threading
import time
from dataclasses import replace, dataclass, field
from typing import Any

import numpy as np

from harness.core.tf_runtime import RUNTIME_ENVIRONMENT
from harness.measure.peer import run_peer_throughput
from harness.measure.stopwatch import Stopwatch, wait_until_quiet
from harness.measure.time_split import measure_split
from harness.measure.training_rate import Session, TrainingRate, measure_training, time_steps, warm_up
from harness.train.fast.choice import FastPaths

MATMUL_SIZE = 3072


@dataclass(frozen=True)
class ThroughputOptions:
    """What one `measure` does beyond the plan: how long it measures and which extras it runs."""

    steps: int = 20                       # timed training steps per measurement
    eval_sample: int = 10_000             # users evaluated for the eval rate
    ablation: bool = False
    peer: bool = False
    peer_rounds: int = 1
    peer_environment: dict[str, str] = field(default_factory=dict)
    check_eval: bool = False
    wait_quiet: int = 0                   # seconds to wait for a quiet machine first
    op_profile: bool = False
    baseline: tuple[Any, Any] | None = None   # (plan, profile) of --baseline SYSTEM


BF16_TARGETS = {"training": 1.4, "eval": 1.3}   # issue 26: cpu-bf16 against cpu on a CPU with bf16 instructions
BASELINE_ROUNDS = 5


def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = 5, dtype: str = "float32") -> float:
    """Best GFLOP/s of a size x size x size tf.matmul in `dtype` (the machine's practical peak).

    TensorFlow's own kernels (no XLA), which is where bf16 products use a CPU's bf16 instructions
    (harness.train.fast.choice, tf_matmuls); on a CPU without them bf16 is emulated.
    """
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_uniform([size, size], seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_uniform([size, size], seed=(3, 4)), dtype)
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size ** 3 / best / 1e9


def reference_macs_per_pair(mf_dim: int, layers: list[int]) -> int:
    """Multiply-adds of one forward pass of the reference model (docs/reference-facts.md §4: 106,624 closed)."""
    dense = sum(a * b for a, b in zip(layers[:-1], layers[1:]))
    return mf_dim + dense + (mf_dim + layers[-1])


# ---------------------------------------------------------------------------------- measuring

def measure_ops(session: Session, trainer: Any, arrays: tuple) -> dict:
    """Time by XLA op of one fused training step on a real batch (see harness.measure.op_profile)."""
    from harness.measure.op_profile import profile_step

    if not trainer.fused:
        return {"available": False, "reason": "the training step is not one XLA program here (distributed path)"}
    if trainer.paths.tf_matmuls:
        return {"available": False, "reason": "the training step is not one XLA program here (bf16 products as "
                                              "TensorFlow ops)"}
    batch = next(iter(session.train_dataset(arrays, 1, trainer)))
    return profile_step(trainer.compiled_step(session.plan.batch_size // session.topology.num_replicas), batch)


def measure_overlap(session: Session, trainer: Any, arrays: tuple, spare: tuple, steps: int) -> dict:
    """Training while the next epoch's negatives are generated in a thread (as the runner does).

    The epoch is written over `spare`, an earlier epoch's arrays, as the runner recycles them.

    Trains at least `steps` steps and until the generation has finished, so the whole cost of
    generating one epoch falls inside the measured window.
    """
    import tensorflow as tf

    plan = session.plan
    per_call = plan.steps_per_call
    # One epoch's batches, or (small sets) enough cycled batches for the warm call and `steps`.
    available = max(len(arrays[0]) // plan.batch_size, steps + 3 * per_call)
    iterator = iter(session.train_dataset(arrays, available, trainer))
    float(trainer.train_steps(iterator, tf.constant(per_call)))
    done = threading.Event()
    generation: dict = {}

    def generate() -> None:
        with Stopwatch() as watch:
            session.epoch(3, out=spare)
        generation["timing"] = watch.timing
        done.set()

    thread = threading.Thread(target=generate, name="negatives", daemon=True)
    trained = 0
    with Stopwatch() as watch:
        thread.start()
        while (trained < steps or not done.is_set()) and trained + per_call < available:
            float(trainer.train_steps(iterator, tf.constant(per_call)))
            trained += per_call
    thread.join()
    t = watch.timing
    rate = TrainingRate(trained * plan.batch_size / t.seconds, 1000 * t.seconds / trained, trained, t)
    return {"rate": rate, "generation": generation["timing"], "finished_during_training": done.is_set()
            and generation["timing"].seconds <= t.seconds}


def measure_eval(session: Session, trainer: Any, users: int, check: bool = False) -> dict:
    """Eval pairs/s over the first `users` users (warm-up step excluded) and the catch-up time.

    With `check`, the same users are also evaluated by the plain reference eval (model forward,
    argsort metrics) on the same weights, and both results are reported side by side.
    """
    from harness.data.sampling import eval_negatives
    from harness.train.input_pipeline import eval_dataset
    from reference import constants
    from reference.eval_rows import duplicate_mask, eval_items

    plan, data, topo = session.plan, session.data, session.topology
    if session.eval_set is None:
        with Stopwatch() as watch:
            items = eval_items(eval_negatives(data, session.seed, plan.num_eval_negatives), data.test_items)
            mask = duplicate_mask(items)
        session.eval_set = (items, mask, watch.timing)
    items, mask, setup = session.eval_set
    users = min(users, data.num_users)
    per_step = plan.eval_users_per_replica * topo.num_replicas
    warm, warm_steps = eval_dataset(session.strategy, items[:per_step], mask[:per_step], plan.eval_users_per_replica,
                                    topo.num_replicas, topo.num_hosts, topo.task_index)
    trainer.evaluate(warm, warm_steps)
    dataset, steps = eval_dataset(session.strategy, items[:users], mask[:users], plan.eval_users_per_replica,
                                  topo.num_replicas, topo.num_hosts, topo.task_index)
    with Stopwatch() as catch_watch:      # evaluate() catches up too; timed apart here
        trainer.catch_up()
    with Stopwatch() as watch:
        sums = trainer.evaluate(dataset, steps)
    timing = watch.timing
    pairs = steps * per_step * constants.EVAL_ROW
    out = {"pairs_per_s": pairs / timing.seconds, "users": users, "pairs_scored": pairs, "timing": timing,
           "hit_rate": sums.hit_rate, "ndcg": sums.ndcg_mean, "hits": sums.hits, "eval_set_setup": setup,
           "catch_up_s": catch_watch.timing.seconds,
           "full_eval_s": data.num_users * constants.EVAL_ROW / (pairs / timing.seconds)}
    if check:
        from harness.train.trainer import Trainer

        reference = Trainer(session.strategy, trainer.model, trainer.adam, match_mlperf=plan.match_mlperf,
                            xla=plan.xla, paths=FastPaths.reference())
        ref = reference.evaluate(dataset, steps)
        out["reference_check"] = {"hits": ref.hits, "weight": ref.weight, "ndcg": ref.ndcg_mean,
                                  "fast_hits": sums.hits, "fast_weight": sums.weight, "fast_ndcg": sums.ndcg_mean,
                                  "identical_hr": ref.hits == sums.hits and ref.weight == sums.weight,
                                  "ndcg_relative_difference": abs(ref.ndcg - sums.ndcg) / max(abs(ref.ndcg), 1e-12)}
    return out


def run_peer(batch: int, xla: bool, wait_quiet: int, env: dict[str, str] | None = None) -> dict:
    """Run the TF Model Garden peer once (in the user's environment plus `env`); its examples/s and load."""
    peer = run_peer_throughput(batch, xla, wait_quiet_s=wait_quiet, env=env)
    return {"environment": dict(env or {}), "examples_per_s": peer.examples_per_s, "best_interval": peer.best_interval,
            "foreign_cores": peer.foreign_cores, "batch": peer.batch, "xla": peer.xla,
            "logged_steps": peer.logged_steps, "log": str(peer.log)}


ABLATION: tuple[tuple[str, FastPaths], ...] = (
    ("reference path (distributed step, model forward, dense Adam, argsort eval)", FastPaths.reference()),
    ("+ fused XLA step", replace(FastPaths.reference(), fused_step=True)),
    ("+ split first layer (train) and fast eval", FastPaths(optimizer_impl="dense", user_order=False)),
    ("+ batches ordered by user (the default)", FastPaths(optimizer_impl="dense")),
    ("+ exact lazy Adam (optional)", FastPaths(optimizer_impl="lazy_exact")),
)


ABLATION_ROUNDS = 3


def measure_ablation(session: Session, arrays: tuple, steps: int, eval_users: int,
                     rounds: int = ABLATION_ROUNDS) -> list[dict]:
    """Training and eval rates of the reference path and each fast path switched on in turn.

    All variants are built and warmed up first, then timed in `rounds` interleaved rounds (each
    round times every variant once, `steps // rounds` steps and one eval each). A variant's
    figures are medians over rounds, and its ratios to the reference path are medians of the
    per-round ratios: a change of machine speed during the measurement (on shared machines,
    +-10% within minutes) then moves a variant and its baseline alike instead of showing up as
    a difference between fast paths measured minutes apart.
    """
    chunk = max(1, steps // rounds)
    rows: list[dict] = []
    live: list[tuple[dict, Session, Any, Any]] = []     # (row, session, trainer, training iterator)
    for label, paths in ABLATION:
        if not session.plan.xla and paths.fused_step:
            continue
        try:
            trainer = session.trainer(paths=paths)
        except ValueError as exc:   # e.g. lazy Adam where no fused step exists
            rows.append({"variant": label, "skipped": str(exc)})
            continue
        row = {"variant": label}
        rows.append(row)
        live.append(_contender(row, session, trainer, arrays, rounds * chunk))
    _interleaved_rounds(live, rounds, chunk, eval_users)
    if live and live[0][0]["variant"] == ABLATION[0][0]:   # ratios need the reference path itself
        base = live[0][0]["rounds"]
        for row, *_ in live:
            row["training_x_reference"], row["eval_x_reference"] = _median_ratios(row["rounds"], base)
    del live
    gc.collect()
    return rows


def _contender(row: dict, session: Session, trainer: Any, arrays: tuple, steps: int) -> tuple[dict, Session, Any, Any]:
    """A trainer ready for timed rounds: its iterator over `steps` batches (after the warm-up) and row."""
    per_call = session.plan.steps_per_call
    iterator = iter(session.train_dataset(arrays, 2 * per_call + steps, trainer))
    warm_up(trainer, iterator, per_call)
    row.update(trainer=trainer.describe(), rounds=[])
    return row, session, trainer, iterator


def _interleaved_rounds(live: list[tuple[dict, Session, Any, Any]], rounds: int, chunk: int, eval_users: int) -> None:
    """Time every contender once per round (`chunk` steps and one eval of `eval_users` users), then
    each row's medians over rounds (and mean foreign cores)."""
    for _ in range(rounds):
        for row, session, trainer, iterator in live:
            rate = time_steps(trainer, iterator, chunk, session.plan.batch_size, session.plan.steps_per_call)
            ev = measure_eval(session, trainer, eval_users)
            row["rounds"].append({"examples_per_s": rate.examples_per_s, "pairs_per_s": ev["pairs_per_s"],
                                  "train_foreign_cores": rate.timing.foreign_cores,
                                  "eval_foreign_cores": ev["timing"].foreign_cores, "hit_rate": ev["hit_rate"]})
    for row, *_ in live:
        done = row["rounds"]
        for key in ("examples_per_s", "pairs_per_s"):
            row[key] = float(np.median([r[key] for r in done]))
        for key in ("train_foreign_cores", "eval_foreign_cores"):
            row[key] = float(np.mean([r[key] or 0.0 for r in done]))
        row["hit_rate"] = done[-1]["hit_rate"]


def _median_ratios(rounds: list[dict], base: list[dict]) -> tuple[float, float]:
    """(training, eval): medians of the per-round ratios of `rounds` to `base`, round by round."""
    return tuple(float(np.median([r[key] / b[key] for r, b in zip(rounds, base)]))   # type: ignore[return-value]
                 for key in ("examples_per_s", "pairs_per_s"))


def measure_baseline(session: Session, arrays: tuple, steps: int, eval_users: int, plan: Any, profile: Any,
                     rounds: int = BASELINE_ROUNDS) -> dict:
    """This profile against the baseline profile (`plan`, `profile`) in `rounds` interleaved rounds.

    Both train on the same epoch's examples and evaluate the same users, with the same data and
    strategy (the command checks that the baseline runs on the same devices); the ratios are
    medians of the per-round ratios, as in the ablation. With bf16 compute on either side, the
    report says whether this CPU has bf16 instructions: without them bf16 is emulated and the
    ratios say nothing about the targets (BF16_TARGETS), which are for CPUs that have them.
    """
    from harness.distribute.hardware import bf16_verdict, host_info

    chunk = max(2, steps // 2)
    base_session = _sharing(session, plan, profile)
    live = [_contender({"system": s.plan.system, "precision": s.plan.precision}, s, s.trainer(), arrays,
                       rounds * chunk) for s in (session, base_session)]
    _interleaved_rounds(live, rounds, chunk, eval_users)
    ours, theirs = live[0][0], live[1][0]
    training, evaluation = _median_ratios(ours["rounds"], theirs["rounds"])
    verdicts = [bf16_verdict(s.plan.precision, s.plan.device, True) for s in (session, base_session)]
    bf16 = any(v.needed for v in verdicts)
    emulated = bf16 and not verdicts[0].present
    del live
    gc.collect()
    return {"ours": ours, "baseline": theirs, "rounds": rounds, "steps_per_round": chunk,
            "training_ratio": training, "eval_ratio": evaluation, "cpu": verdicts[0].cpu,
            "cpu_flags": host_info()["cpu_isa"], "bf16_instructions": list(verdicts[0].present),
            "targets": BF16_TARGETS if bf16 else None, "meaningful_for_targets": bf16 and not emulated,
            "note": (f"this {verdicts[0].cpu} has neither AVX512_BF16 nor AMX-BF16: bf16 is emulated, so these "
                     "ratios are not meaningful for the targets" if emulated else None)}


def _sharing(session: Session, plan: Any, profile: Any) -> Session:
    """A Session of another profile on `session`'s data, strategy, seed and eval set."""
    from harness.run.progress import RunDisplay
    from harness.run.runner import BenchmarkSession

    other = copy.copy(session)
    other.plan = plan
    other.bench = BenchmarkSession(plan, profile, RunDisplay(quiet=True))
    other.bench.data, other.bench.strategy, other.bench.topology = session.data, session.strategy, session.topology
    return other


def measure(plan: Any, profile: Any, options: ThroughputOptions) -> dict:
    """Every measurement of one invocation, as a JSON-friendly dict."""
    from harness.measure.read_floor import epoch_read_floor
    from reference import constants

    report: dict = {"system": plan.system, "dataset": plan.dataset, "batch_size": plan.batch_size,
                    "precision": plan.precision, "steps_per_call": plan.steps_per_call,
                    "load_average_before": os.getloadavg(),
                    "runtime_environment": {key: os.environ.get(key) for key in RUNTIME_ENVIRONMENT}}
    if options.wait_quiet:
        report["foreign_cores_after_wait"] = wait_until_quiet(options.wait_quiet)
    session = Session(plan, profile)
    data = session.data
    report["matmul_gflops"] = matmul_gflops()   # the session built the sampling tables
    report["matmul_gflops_bf16"] = matmul_gflops(dtype="bfloat16")
    with Stopwatch() as watch:
        arrays = session.epoch(1)
    report["negatives_and_shuffle_first_epoch"] = watch.timing   # into fresh memory (runs now pre-fault theirs)
    spare = tuple(a.copy() for a in arrays)                      # memory an earlier epoch has written
    with Stopwatch() as watch:
        session.epoch(2, out=spare)
    report["negatives_and_shuffle"] = watch.timing               # every later epoch of a run
    report["epoch_kernel"] = session.epoch_kernel()
    report["negatives_read_floor"] = epoch_read_floor(data, plan.num_neg)   # what the reads alone take, now
    steps = options.steps
    trainer = session.trainer()
    ours = [measure_training(session, trainer, arrays, steps)]
    report["trainer"] = trainer.describe()
    if options.peer:
        report["peer"] = []
        for _ in range(options.peer_rounds):
            report["peer"].append(run_peer(plan.batch_size, plan.xla, options.wait_quiet, options.peer_environment))
            ours.append(measure_training(session, trainer, arrays, steps))
    report["training"] = ours
    report["split"] = measure_split(session, trainer, arrays, max(4, steps // 2))
    if options.op_profile:
        report["op_profile"] = measure_ops(session, trainer, arrays)
    report["overlap"] = measure_overlap(session, trainer, arrays, spare, steps)
    report["eval"] = measure_eval(session, trainer, options.eval_sample, check=options.check_eval)
    del trainer
    gc.collect()
    if options.ablation:
        report["ablation"] = measure_ablation(session, arrays, max(ABLATION_ROUNDS, steps), min(options.eval_sample, 4000))
    if options.baseline:
        report["baseline"] = measure_baseline(session, arrays, steps, min(options.eval_sample, 4000), *options.baseline)
    _derive(report, plan, data, constants.EVAL_ROW)
    return report


def _derive(report: dict, plan: Any, data: Any, eval_row: int) -> None:
    """Per-epoch time split, FLOP ratios and the peer ratio from the raw measurements."""
    macs = reference_macs_per_pair(plan.mf_dim, plan.layers)
    train_rate = float(np.mean([r.examples_per_s for r in report["training"]]))
    eval_rate = report["eval"]["pairs_per_s"]
    bf16 = plan.precision == "mixed_bfloat16"   # the work rate against the rate of the profile's own precision
    gflops = report["matmul_gflops_bf16"] if bf16 else report["matmul_gflops"]
    examples = len(data.train_users) * (1 + plan.num_neg)
    steps = -(-examples // plan.batch_size)
    split = report["split"]
    wait_ms = split["input_wait_ms"]
    overlap = report["overlap"]
    # Generating an epoch's negatives happens once per epoch; what it costs training is the extra
    # time of the measured window over the same steps at the undisturbed rate.
    window = overlap["rate"]
    overlap["extra_seconds"] = max(0.0, window.timing.seconds - window.steps * plan.batch_size / train_rate)
    report["epoch_seconds"] = {
        "negatives_and_shuffle_standalone": report["negatives_and_shuffle"].seconds,
        "negatives_read_floor": report["negatives_read_floor"].seconds,
        "negatives_and_shuffle_cost_when_overlapped": overlap["extra_seconds"]
        if overlap["finished_during_training"] else None,
        "input": split["input_ms"] * steps / 1000,
        "forward_backward": split["forward_backward_ms"] * steps / 1000 if "forward_backward_ms" in split else None,
        "optimizer": split["optimizer_ms"] * steps / 1000 if "optimizer_ms" in split else None,
        "input_wait": wait_ms * steps / 1000,
        "input_cost": split["input_cost_ms"] * steps / 1000,
        "training": examples / train_rate,
        "eval_catch_up": report["eval"]["catch_up_s"],
        "eval": report["eval"]["full_eval_s"],
    }
    report["ratios"] = {
        "negatives_vs_read_floor": report["negatives_and_shuffle"].seconds / report["negatives_read_floor"].seconds,
        "training_reference_gflops": train_rate * 6 * macs / 1e9,
        "training_vs_matmul": train_rate * 6 * macs / 1e9 / gflops,
        "eval_reference_gflops": eval_rate * 2 * macs / 1e9,
        "eval_vs_matmul": eval_rate * 2 * macs / 1e9 / gflops,
        "matmul_dtype": "bfloat16" if bf16 else "float32",   # the rate the two above divide by
    }
    if "peer" in report:
        report["ratios"].update(peer_ratios([r.examples_per_s for r in report["training"]],
                                            [run["examples_per_s"] for run in report["peer"]]))


def peer_ratios(ours: list[float], peer: list[float]) -> dict:
    """Ours against the peer when peer run i ran between our measurements i and i + 1.

    Each round's ratio divides the mean of the two measurements of ours around the peer run by
    the peer's rate; `training_vs_peer` is their median (with one round, that round's ratio).
    """
    rounds = [(ours[i] + ours[i + 1]) / 2 / rate for i, rate in enumerate(peer)]
    return {"training_vs_peer": float(np.median(rounds)), "training_vs_peer_rounds": rounds}
