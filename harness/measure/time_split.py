"""Where a training step's time goes (input, input wait, forward + backward, optimizer): `measure_split`.

Why its own module: the split is the one throughput measurement that times variants of the same
step against each other, in interleaved rounds with paired differences (`measure_split` says why),
and it needs helpers nothing else uses: the batches held in memory and the eager fused steps.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from harness.core.tf_runtime import wait_for
from harness.measure.stopwatch import Stopwatch
from harness.measure.training_rate import Session, run_calls


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
        "pipeline_step_ms": lambda r: run_calls(trainer, pipeline, chunk, per_call),
        "step_in_memory_ms": lambda r: run_calls(trainer, memory, chunk, per_call),
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
    stall = trace_input_stall(lambda: run_calls(trainer, pipeline, chunk, per_call))
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


def _eager_steps(step: Callable, batches: list, steps: int, round_index: int) -> None:
    result = None
    for i in range(steps):
        result = step(*batches[(round_index * steps + i) % len(batches)])
    wait_for(result)
