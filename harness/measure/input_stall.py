"""How long a training loop sat blocked waiting for its next batch, read off the TensorFlow trace.

Why: "input wait" is the time the cores (or an accelerator) stood idle because the next batch was
not ready. Measured as the difference between a step fed by the pipeline and one fed from memory,
it is the small difference of two large, noisy step times (on a 2-core machine, rounds of a
700 ms step scatter by +-40 ms, far more than the 14 ms that 2% is). The loop's own record is
sharper: every `next(iterator)` inside a compiled training loop runs the IteratorGetNext kernel,
which returns at once when the prefetch buffer holds a batch and blocks until tf.data produces
one when it does not. While the TensorFlow profiler records, each of those kernel calls is one
host event, so the sum of their durations over a traced stretch of training *is* the time the
loop waited for input (plus the microseconds a dequeue takes).

What it does not show: the pipeline's threads may still slow the step by competing with it for
cores. That cost is in the paired step-time difference `throughput` also reports, not here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness.measure.profiler_trace import trace

# The kernels that hand the consumer its next element: a plain or distributed dataset iterator's
# GetNext (also as an optional), and a multi-device iterator's per-device shard. Their events sit
# on the consumer's thread; tf.data's own "Iterator::..." events nest inside them and are not
# counted again.
GET_NEXT_KERNELS = ("IteratorGetNextOp::DoCompute", "IteratorGetNextAsOptionalOp::DoCompute",
                    "MultiDeviceIteratorGetNextFromShardOp::DoCompute")


@dataclass(frozen=True)
class InputStall:
    """A traced stretch of training: its wall time and the part of it spent blocked on input."""

    wall_ms: float
    wait_ms: float
    batches: int        # GetNext calls traced (one per step, per replica on a distributed iterator)

    @property
    def share(self) -> float:
        """The share of the stretch's wall time the loop spent waiting for batches."""
        return self.wait_ms / self.wall_ms if self.wall_ms > 0 else 0.0


def get_next_events(space: Any) -> tuple[float, int]:
    """(total milliseconds, count) of the GetNext kernel events in one profiler XSpace."""
    total_ms, count = 0.0, 0
    for plane in space.planes:
        wanted = {key for key, meta in plane.event_metadata.items() if meta.name in GET_NEXT_KERNELS}
        if not wanted:
            continue
        for line in plane.lines:
            for event in line.events:
                if event.metadata_id in wanted:
                    total_ms += event.duration_ps / 1e9
                    count += 1
    return total_ms, count


def trace_input_stall(run: Callable[[], None]) -> InputStall:
    """Run `run()` (training steps that consume an iterator, synchronised before it returns)
    under the TensorFlow profiler; its wall time and the time its GetNext calls blocked.

    Raises RuntimeError when the trace holds no GetNext event, so a loop that takes its input
    some other way is never reported as one that never waited.
    """
    import tensorflow as tf

    # Host events only, at the lowest level (the GetNext kernels are traced there); no Python
    # or device tracing, so the trace itself adds as little as it can to the traced steps.
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=1, python_tracer_level=0,
                                                       device_tracer_level=0)
    wall, space = trace(run, options)
    wait_ms, count = get_next_events(space) if space is not None else (0.0, 0)
    if count == 0:
        raise RuntimeError("the profiler trace holds no iterator GetNext events for the traced steps")
    return InputStall(1000 * wall, wait_ms, count)
