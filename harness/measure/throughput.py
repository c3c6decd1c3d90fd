"""`run_benchmark.py throughput`: how fast this harness trains and evaluates on a system profile.

Measures, with warm-up (tracing, XLA compilation, the first steps) excluded:
  * training examples/s through the real input pipeline and the profile's Trainer settings;
  * eval candidate pairs/s (after the lazy-Adam catch-up, which is timed on its own);
  * the time split of an epoch: negatives and shuffling, input (tf.data slicing), forward and
    backward, optimizer, eval, and input wait (how much longer a step takes when fed by the
    pipeline than when its batch is already in memory), plus the cost of generating the next
    epoch's negatives while training (the runner overlaps them);
  * this machine's fp32 matmul rate (a large tf.matmul) in the same invocation, and the ratio of
    the work done (counted as the reference model's FLOPs, REFERENCE §4) to it.
Optional: `--ablation` times the plain reference path and each fast path switched on in turn;
`--peer` runs the TF Model Garden NCF peer (harness.measure.peer, in a venv of its own built on
first use) at the same batch size and XLA setting between two measurements of ours and reports
the ratio; `--peer-rounds N` takes N turns (ours, peer, ours, peer, ..., ours) and reports each
peer run against the two measurements of ours around it, and the median of those ratios: the
peer's rate and ours drift independently by ±15% between minutes here, so one turn says as much
about the minute as about the software. Performance claims are ratios against
baselines measured in the same invocation; each measurement also reports the CPU time other
processes used meanwhile ("foreign cores"), because on a shared machine that is what moves
absolute numbers.
`--dry-run` prints what would run (how GPU and TPU profiles would be set up) without measuring.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Callable

import numpy as np

from harness.core.errors import UserError
from harness.measure.peer import PEER_ENV_HELP, parse_peer_env, run_peer_throughput
from harness.measure.peer_launcher import machine_busy_seconds
from harness.core.process_usage import cpu_seconds, minor_page_faults
from harness.core.tf_runtime import RUNTIME_ENVIRONMENT, wait_for

MATMUL_SIZE = 3072


# ------------------------------------------------------------------------------- command line

def register(subparsers: argparse._SubParsersAction) -> None:
    from harness.commands.run import add_run_arguments

    p = subparsers.add_parser(
        "throughput", help="measure training examples/s, eval pairs/s and where the time goes",
        description="Measure this harness's training and eval throughput on a system profile (warm-up "
                    "excluded), the time split of an epoch, and the ratio to this machine's fp32 matmul "
                    "rate; optionally against the plain reference path (--ablation) and the TF Model "
                    "Garden peer (--peer), measured in the same invocation.")
    add_run_arguments(p)
    p.add_argument("--steps", type=int, default=20, help="timed training steps per measurement (default 20)")
    p.add_argument("--eval-sample", type=int, default=10000,
                   help="users evaluated for the eval rate (x 1,000 candidates; default 10,000)")
    p.add_argument("--ablation", action="store_true",
                   help="also time the plain reference path and each fast path switched on in turn")
    p.add_argument("--peer", action="store_true",
                   help="run the TF Model Garden NCF peer (its own venv, built on first use) at our batch size "
                        "and XLA setting between two runs of ours")
    p.add_argument("--peer-rounds", type=int, default=1, metavar="N",
                   help="with --peer: run the peer N times, each between two runs of ours (default 1)")
    p.add_argument("--peer-env", action="append", default=[], metavar="KEY=VALUE", help="with --peer: " + PEER_ENV_HELP)
    p.add_argument("--check-eval", action="store_true",
                   help="also evaluate the sample with the plain reference eval on the same weights and compare")
    p.add_argument("--wait-quiet", type=int, default=0, metavar="SECONDS",
                   help="before measuring, wait up to SECONDS for other processes to use < 0.3 cores")
    p.add_argument("--op-profile", action="store_true",
                   help="also trace one compiled training step and show its time by XLA op and op category")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--dry-run", action="store_true", help="show what would run and exit without measuring")
    p.set_defaults(handler=throughput)


def throughput(args: argparse.Namespace) -> int:
    from harness.commands.run import resolve

    if args.steps < 2:
        raise UserError(f"--steps must be at least 2, got {args.steps}.")
    if args.eval_sample < 1:
        raise UserError(f"--eval-sample must be positive, got {args.eval_sample}.")
    if args.peer_rounds < 1 or (args.peer_rounds > 1 and not args.peer):
        raise UserError(f"--peer-rounds must be at least 1 and needs --peer, got {args.peer_rounds}.")
    if args.peer_env and not args.peer:
        raise UserError("--peer-env needs --peer.")
    args.peer_environment = parse_peer_env(args.peer_env)   # flags first, then what is on disk
    profile, plan = resolve(args)
    settings = _planned_settings(plan)
    if args.dry_run:
        _print_dry_run(plan, profile, settings, args)
        return 0
    from harness.commands.run import check_hardware

    check_hardware(profile, plan, args)
    report = measure(plan, profile, args)
    if args.json:
        print(json.dumps(report, indent=2, default=_jsonable))
    else:
        _print_report(report)
    return 0


def _planned_settings(plan: Any) -> dict:
    from harness.train.fast.choice import planned_settings

    return planned_settings(plan.xla, plan.num_replicas, plan.device, plan.precision, plan.optimizer)


# ----------------------------------------------------------------------------- measurement kit

@dataclass
class Timing:
    """Wall seconds of one measured stretch, with this process' and other processes' CPU use and
    this process's minor page faults."""

    seconds: float
    own_cores: float | None
    foreign_cores: float | None
    page_faults: int = 0


class Stopwatch:
    """Times a stretch and how many cores this process and everything else used meanwhile.

    Foreign cores come from /proc/stat (whole machine busy time minus ours), read as the peer's
    launcher reads them; elsewhere they are None.
    """

    def __enter__(self) -> "Stopwatch":
        self._busy0 = machine_busy_seconds()
        self._own0 = cpu_seconds()
        self._faults0 = minor_page_faults()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        own = cpu_seconds() - self._own0
        busy = machine_busy_seconds()
        foreign = None if busy is None or self._busy0 is None else max(0.0, (busy - self._busy0) - own) / seconds
        self.timing = Timing(seconds, own / seconds, foreign, minor_page_faults() - self._faults0)


def wait_until_quiet(limit_s: int, threshold: float = 0.3, window_s: float = 5.0) -> float | None:
    """Wait up to `limit_s` for other processes to use fewer than `threshold` cores; the last reading."""
    waited, reading = 0.0, None
    while waited < limit_s:
        with Stopwatch() as watch:
            time.sleep(window_s)
        reading = watch.timing.foreign_cores
        if reading is None or reading < threshold:
            return reading
        waited += window_s
    return reading


def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of a size x size x size tf.matmul (the machine's practical peak)."""
    import tensorflow as tf

    a = tf.random.stateless_uniform([size, size], seed=(1, 2))
    b = tf.random.stateless_uniform([size, size], seed=(3, 4))
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size ** 3 / best / 1e9


def reference_macs_per_pair(mf_dim: int, layers: list[int]) -> int:
    """Multiply-adds of one forward pass of the reference model (REFERENCE §4: 106,624 closed)."""
    dense = sum(a * b for a, b in zip(layers[:-1], layers[1:]))
    return mf_dim + dense + (mf_dim + layers[-1])


# ---------------------------------------------------------------------------------- measuring

@dataclass
class TrainingRate:
    examples_per_s: float
    ms_per_step: float
    steps: int
    timing: Timing


def _time_steps(trainer: Any, iterator: Any, steps: int, batch: int, steps_per_call: int) -> TrainingRate:
    with Stopwatch() as watch:
        _calls(trainer, iterator, steps, steps_per_call)
    t = watch.timing
    return TrainingRate(steps * batch / t.seconds, 1000 * t.seconds / steps, steps, t)


class Session:
    """Data, strategy and one model + Trainer built the way a benchmark run builds them."""

    def __init__(self, plan: Any, profile: Any) -> None:
        from harness.run.progress import RunDisplay
        from harness.run.runner import BenchmarkSession

        self.plan = plan
        self.bench = BenchmarkSession(plan, profile, RunDisplay(quiet=True))
        if plan.num_hosts > 1:
            raise UserError("throughput measures one host; run it with a single-host profile.")
        self.bench.start(provenance=False)
        self.data = self.bench.data
        self.strategy = self.bench.strategy
        self.topology = self.bench.topology
        self.seed = plan.seeds[0]
        self.eval_set: tuple | None = None   # (items, duplicate mask, Timing of making them)

    def trainer(self, **options: Any) -> Any:
        """A fresh model and Trainer built as a run builds them, with `options` overriding the plan's."""
        return self.bench.build_trainer(self.seed, **options)

    def epoch(self, epoch: int, out: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This host's shard of `epoch`, written over `out` (an earlier epoch's arrays) if given, as a run does."""
        from harness.data.sampling import epoch_examples

        return epoch_examples(self.data, self.seed, epoch, self.plan.num_neg, shard=self.topology.task_index,
                              num_shards=self.topology.num_hosts, out=out)

    def epoch_kernel(self) -> str:
        """Which rendering of the epoch `epoch` runs ("compiled" or "numpy"; the same arrays)."""
        from harness.data.sampling import epoch_kernel, positive_set

        return epoch_kernel(positive_set(self.data))

    def train_dataset(self, arrays: tuple[np.ndarray, ...], steps: int, trainer: Any) -> Any:
        """`steps` batches of `arrays` for `trainer`, in the batch order it asks for, as a run feeds it."""
        from harness.train.input_pipeline import train_dataset

        # A small set's epoch may hold fewer than `steps` batches (e.g. 50 steps per call on
        # synthetic-small): cycle its examples so every measured step is a full, real batch.
        n = steps * self.plan.batch_size // self.topology.num_hosts
        return train_dataset(self.strategy, *(np.resize(a, n) for a in arrays), steps, self.plan.batch_size,
                             self.topology.num_hosts, user_order=trainer.user_ordered_batches)


def _warm_up(trainer: Any, iterator: Any, steps_per_call: int) -> None:
    """Compile and run the first two real calls (a capacity plan may be refined after the first one)."""
    _calls(trainer, iterator, 2 * steps_per_call, steps_per_call)


def measure_training(session: Session, trainer: Any, arrays: tuple, steps: int) -> TrainingRate:
    """Examples/s of `steps` steps through the real input pipeline (after `_warm_up`)."""
    plan = session.plan
    per_call = plan.steps_per_call
    iterator = iter(session.train_dataset(arrays, steps + 2 * per_call, trainer))
    _warm_up(trainer, iterator, per_call)
    return _time_steps(trainer, iterator, steps, plan.batch_size, per_call)


def measure_split(session: Session, trainer: Any, arrays: tuple, steps: int, rounds: int = 3) -> dict:
    """Per-step ms of: input alone; a step fed by the pipeline vs by batches already in memory
    (the difference is input cost); the time a traced stretch of pipeline-fed steps sat blocked
    in the iterator (input wait, see harness.measure.input_stall); and, for the fused path, the step
    without its update (forward + backward) vs with it (the difference is the optimizer).

    The variants run interleaved in `rounds` rounds, in reversed order every other round, and
    report medians, so a change in machine load or clock speed during the measurement affects
    them alike. The two differences are paired: the median over rounds of each round's
    difference (kept per round in `*_rounds_ms`), not a difference of two medians, since a
    round's two numbers share that round's machine speed.
    """
    import tensorflow as tf

    from harness.measure.input_stall import trace_input_stall

    plan = session.plan
    batch = plan.batch_size // session.topology.num_replicas
    per_call = plan.steps_per_call
    chunk = max(per_call, steps // rounds)
    total = chunk * rounds
    pipeline = iter(session.train_dataset(arrays, total + per_call + chunk, trainer))
    source = iter(session.train_dataset(arrays, total, trainer))
    with Stopwatch() as watch:
        batches = [next(source) for _ in range(total)]
        wait_for(batches[-1])
    out: dict = {"input_ms": 1000 * watch.timing.seconds / total}
    memory = iter(_in_memory(session.strategy, batches))
    variants: dict[str, Callable[[int], None]] = {
        "pipeline_step_ms": lambda r: _calls(trainer, pipeline, chunk, per_call),
        "step_in_memory_ms": lambda r: _calls(trainer, memory, chunk, per_call),
    }
    if trainer.fused:
        for name, update in (("eager_step_ms", True), ("forward_backward_ms", False)):
            step = trainer.compiled_step(batch, update=update)
            wait_for(step(*batches[0]))
            variants[name] = functools.partial(_eager_steps, step, batches, chunk)
    float(trainer.train_steps(pipeline, tf.constant(per_call)))    # warm both pipelines
    float(trainer.train_steps(memory, tf.constant(per_call)))
    times: dict[str, list[float]] = {name: [] for name in variants}
    foreign = []
    order = list(variants.items())
    for r in range(rounds):
        for name, run in (order if r % 2 == 0 else order[::-1]):
            with Stopwatch() as watch:
                run(r)
            times[name].append(1000 * watch.timing.seconds / chunk)
            foreign.append(watch.timing.foreign_cores or 0.0)
    out.update({name: float(np.median(values)) for name, values in times.items()})
    out["foreign_cores"] = float(np.mean(foreign))

    def paired(name: str, minuend: str, subtrahend: str) -> None:
        rounds_ms = [a - b for a, b in zip(times[minuend], times[subtrahend])]
        out[name + "_rounds_ms"] = rounds_ms
        out[name + "_ms"] = max(0.0, float(np.median(rounds_ms)))

    paired("input_cost", "pipeline_step_ms", "step_in_memory_ms")
    out["input_cost_share"] = out["input_cost_ms"] / out["pipeline_step_ms"]
    stall = trace_input_stall(lambda: _calls(trainer, pipeline, chunk, per_call))
    out["input_wait_traced_step_ms"] = stall.wall_ms / chunk
    out["input_wait_ms"] = stall.wait_ms / chunk
    out["input_wait_share"] = stall.share
    out["input_wait_get_next_calls"] = stall.batches
    if trainer.fused:
        paired("optimizer", "eager_step_ms", "forward_backward_ms")
    return out


def _in_memory(strategy: Any, batches: list) -> Any:
    """The same batches, already in memory, fed to the replicas the way the pipeline feeds them.

    A distributed dataset made by a function hands its consecutive elements to the replicas in
    turn, so each replica's part of every step is laid out step by step, replica by replica; on
    one replica (the default strategy) a step's batch is its only part.
    """
    import tensorflow as tf

    parts = [replica for batch in batches
             for replica in zip(*(strategy.experimental_local_results(column) for column in batch))]
    with tf.device("CPU:0"):
        columns = tuple(tf.stack(column) for column in zip(*parts))
    return strategy.distribute_datasets_from_function(
        lambda ctx: tf.data.Dataset.from_tensor_slices(columns).repeat())


def measure_ops(session: Session, trainer: Any, arrays: tuple) -> dict:
    """Time by XLA op of one fused training step on a real batch (see harness.measure.op_profile)."""
    from harness.measure.op_profile import profile_step

    if not trainer.fused:
        return {"available": False, "reason": "the training step is not one XLA program here (distributed path)"}
    batch = next(iter(session.train_dataset(arrays, 1, trainer)))
    return profile_step(trainer.compiled_step(session.plan.batch_size // session.topology.num_replicas), batch)


def _calls(trainer: Any, iterator: Any, steps: int, per_call: int) -> None:
    import tensorflow as tf

    done = 0
    while done < steps:
        n = min(per_call, steps - done)
        float(trainer.train_steps(iterator, tf.constant(n)))
        done += n


def _eager_steps(step: Callable, batches: list, steps: int, round_index: int) -> None:
    result = None
    for i in range(steps):
        result = step(*batches[(round_index * steps + i) % len(batches)])
    wait_for(result)


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
                            xla=plan.xla, optimizer_impl="dense", split_first_layer=False, fast_eval=False,
                            fused_step=False)
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


ABLATION = (
    ("reference path (distributed step, model forward, dense Adam, argsort eval)",
     dict(fused_step=False, split_first_layer=False, fast_eval=False, optimizer_impl="dense")),
    ("+ fused XLA step", dict(split_first_layer=False, fast_eval=False, optimizer_impl="dense", user_order=False)),
    ("+ split first layer (train) and fast eval", dict(optimizer_impl="dense", user_order=False)),
    ("+ batches ordered by user (the default)", dict(optimizer_impl="dense")),
    ("+ exact lazy Adam (optional)", dict(optimizer_impl="lazy_exact")),
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
    per_call = session.plan.steps_per_call
    chunk = max(1, steps // rounds)
    rows: list[dict] = []
    live: list[tuple[dict, Any, Any]] = []     # (row, trainer, training iterator)
    for label, options in ABLATION:
        if not session.plan.xla and options.get("fused_step", True):
            continue
        try:
            trainer = session.trainer(**options)
        except ValueError as exc:   # e.g. lazy Adam where no fused step exists
            rows.append({"variant": label, "skipped": str(exc)})
            continue
        iterator = iter(session.train_dataset(arrays, 2 * per_call + rounds * chunk, trainer))
        _warm_up(trainer, iterator, per_call)
        row = {"variant": label, "trainer": trainer.describe(), "rounds": []}
        rows.append(row)
        live.append((row, trainer, iterator))
    for _ in range(rounds):
        for row, trainer, iterator in live:
            rate = _time_steps(trainer, iterator, chunk, session.plan.batch_size, per_call)
            ev = measure_eval(session, trainer, eval_users)
            row["rounds"].append({"examples_per_s": rate.examples_per_s, "pairs_per_s": ev["pairs_per_s"],
                                  "train_foreign_cores": rate.timing.foreign_cores,
                                  "eval_foreign_cores": ev["timing"].foreign_cores, "hit_rate": ev["hit_rate"]})
    for row, _, _ in live:
        done = row["rounds"]
        for key in ("examples_per_s", "pairs_per_s"):
            row[key] = float(np.median([r[key] for r in done]))
        for key in ("train_foreign_cores", "eval_foreign_cores"):
            row[key] = float(np.mean([r[key] or 0.0 for r in done]))
        row["hit_rate"] = done[-1]["hit_rate"]
    if live and live[0][0]["variant"] == ABLATION[0][0]:   # ratios need the reference path itself
        base = live[0][0]["rounds"]
        for row, _, _ in live:
            for key, name in (("examples_per_s", "training_x_reference"), ("pairs_per_s", "eval_x_reference")):
                row[name] = float(np.median([r[key] / b[key] for r, b in zip(row["rounds"], base)]))
    del live
    gc.collect()
    return rows


def measure(plan: Any, profile: Any, args: argparse.Namespace) -> dict:
    """Every measurement of one invocation, as a JSON-friendly dict."""
    from harness.measure.read_floor import epoch_read_floor
    from reference import constants

    report: dict = {"system": plan.system, "dataset": plan.dataset, "batch_size": plan.batch_size,
                    "precision": plan.precision, "steps_per_call": plan.steps_per_call,
                    "load_average_before": os.getloadavg(),
                    "runtime_environment": {key: os.environ.get(key) for key in RUNTIME_ENVIRONMENT}}
    if args.wait_quiet:
        report["foreign_cores_after_wait"] = wait_until_quiet(args.wait_quiet)
    session = Session(plan, profile)
    data = session.data
    report["matmul_gflops"] = matmul_gflops()   # the session built the sampling tables
    with Stopwatch() as watch:
        arrays = session.epoch(1)
    report["negatives_and_shuffle_first_epoch"] = watch.timing   # into fresh memory (runs now pre-fault theirs)
    spare = tuple(a.copy() for a in arrays)                      # memory an earlier epoch has written
    with Stopwatch() as watch:
        session.epoch(2, out=spare)
    report["negatives_and_shuffle"] = watch.timing               # every later epoch of a run
    report["epoch_kernel"] = session.epoch_kernel()
    report["negatives_read_floor"] = epoch_read_floor(data, plan.num_neg)   # what the reads alone take, now
    steps = args.steps
    trainer = session.trainer()
    ours = [measure_training(session, trainer, arrays, steps)]
    report["trainer"] = trainer.describe()
    if args.peer:
        report["peer"] = []
        for _ in range(args.peer_rounds):
            report["peer"].append(run_peer(plan.batch_size, plan.xla, args.wait_quiet, args.peer_environment))
            ours.append(measure_training(session, trainer, arrays, steps))
    report["training"] = ours
    report["split"] = measure_split(session, trainer, arrays, max(4, steps // 2))
    if getattr(args, "op_profile", False):
        report["op_profile"] = measure_ops(session, trainer, arrays)
    report["overlap"] = measure_overlap(session, trainer, arrays, spare, steps)
    report["eval"] = measure_eval(session, trainer, args.eval_sample, check=args.check_eval)
    del trainer
    gc.collect()
    if args.ablation:
        report["ablation"] = measure_ablation(session, arrays, max(ABLATION_ROUNDS, steps), min(args.eval_sample, 4000))
    _derive(report, plan, data, constants.EVAL_ROW)
    return report


def _derive(report: dict, plan: Any, data: Any, eval_row: int) -> None:
    """Per-epoch time split, FLOP ratios and the peer ratio from the raw measurements."""
    macs = reference_macs_per_pair(plan.mf_dim, plan.layers)
    train_rate = float(np.mean([r.examples_per_s for r in report["training"]]))
    eval_rate = report["eval"]["pairs_per_s"]
    gflops = report["matmul_gflops"]
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
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    trainer = report["trainer"]
    lazy = trainer.get("lazy_tables")
    optimizer = trainer["optimizer_impl"] + (f" (lazy tables: {', '.join(lazy)})" if lazy else "")
    console.print(f"[bold]throughput[/bold] {report['system']} on {report['dataset']}: batch {report['batch_size']:,}, "
                  f"{report['precision']}, {trainer['path']} step, optimizer {optimizer}, "
                  f"split first layer {'on' if trainer['split_first_layer'] else 'off'}, "
                  f"fast eval {'on' if trainer['fast_eval'] else 'off'}, XLA {'on' if trainer['xla'] else 'off'}")
    load = report["load_average_before"]
    console.print(f"machine: fp32 matmul {report['matmul_gflops']:.1f} GFLOP/s ({MATMUL_SIZE}^3); "
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
                  f"{ratios['training_vs_matmul']:.2f} x matmul; eval {ratios['eval_reference_gflops']:.1f} GFLOP/s = "
                  f"{ratios['eval_vs_matmul']:.2f} x matmul")
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


def _print_dry_run(plan: Any, profile: Any, settings: dict, args: argparse.Namespace) -> None:
    from harness.run.plan import describe_plan
    from harness.run.progress import RunDisplay

    rows = describe_plan(plan)
    rows += [
        ("training step", f"{settings['path']} ({'one XLA program per step' if settings['path'] == 'fused' else 'per-replica gradients, all-reduce, Adam via merge_call'})"),
        ("optimizer implementation", settings["optimizer_impl"]),
        ("first MLP layer", "split: user and item halves once per distinct row (training), per user and per catalogue item (eval)"),
        ("eval ranking", "sort-free rank of the true item; output layer in float32"),
        ("loss scaling", settings["loss_scale"] or "none"),
        ("would measure", f"{args.steps} training steps, {args.eval_sample:,} eval users"
                          + (", ablation" if args.ablation else "") + (", TF Model Garden peer" if args.peer else "")),
    ]
    if plan.device != "cpu":
        rows.append(("note", f"needs {plan.num_replicas} {plan.device.upper()} replica(s): measurable only where that "
                             "hardware is present"))
    if args.json:
        print(json.dumps({"plan": plan.to_dict(), "trainer": settings}, indent=2, default=str))
        return
    RunDisplay().plan(rows, title="throughput plan (dry run)")
