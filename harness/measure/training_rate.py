"""Training steps through the real input pipeline, timed, on a session built the way a run builds it.

Why: every throughput figure must come from the data, strategy, model and Trainer a benchmark run
uses (`Session` builds them through the runner) and be fed the way a run feeds them, with the
warm-up (tracing, XLA compilation, the first calls) outside the timed stretch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.core.errors import UserError
from harness.measure.stopwatch import Stopwatch, Timing


@dataclass
class TrainingRate:
    """Training examples/s and ms per step of one timed stretch of `steps` steps."""

    examples_per_s: float
    ms_per_step: float
    steps: int
    timing: Timing


def time_steps(trainer: Any, iterator: Any, steps: int, batch: int, steps_per_call: int) -> TrainingRate:
    """The rate of `steps` steps of global batch `batch` from `iterator` (already warm)."""
    with Stopwatch() as watch:
        run_calls(trainer, iterator, steps, steps_per_call)
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


def warm_up(trainer: Any, iterator: Any, steps_per_call: int) -> None:
    """Compile and run the first two real calls (a capacity plan may be refined after the first one)."""
    run_calls(trainer, iterator, 2 * steps_per_call, steps_per_call)


def measure_training(session: Session, trainer: Any, arrays: tuple, steps: int) -> TrainingRate:
    """Examples/s of `steps` steps through the real input pipeline (after `warm_up`)."""
    plan = session.plan
    per_call = plan.steps_per_call
    iterator = iter(session.train_dataset(arrays, steps + 2 * per_call, trainer))
    warm_up(trainer, iterator, per_call)
    return time_steps(trainer, iterator, steps, plan.batch_size, per_call)


def run_calls(trainer: Any, iterator: Any, steps: int, per_call: int) -> None:
    """`steps` training steps from `iterator`, `per_call` per compiled call (the last call takes the rest)."""
    import tensorflow as tf

    done = 0
    while done < steps:
        n = min(per_call, steps - done)
        float(trainer.train_steps(iterator, tf.constant(n)))
        done += n
