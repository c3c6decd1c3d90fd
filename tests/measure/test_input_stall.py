"""The traced input wait: a loop fed faster than it steps waits almost never; one fed slower waits
for most of its time; a stretch with no iterator is an error, not a zero."""
from __future__ import annotations

import pytest

tf = pytest.importorskip("tensorflow")

from harness.measure.input_stall import InputStall, trace_input_stall  # noqa: E402

STEPS = 8


def _chained_products(x, w, count: int):
    """`count` products tanh(y @ w) in a row, starting from x: a tunable amount of real work."""
    y = x
    for _ in range(count):
        y = tf.tanh(y @ w)
    return tf.reduce_sum(y)


def _loop(matmuls_per_step: int):
    """A compiled loop whose step costs `matmuls_per_step` 384^3 matrix products."""
    w = tf.Variable(tf.random.stateless_normal([384, 384], seed=[1, 2]) / 20.0)

    @tf.function(jit_compile=True)
    def step(x):
        return _chained_products(w, w, matmuls_per_step) + x

    @tf.function
    def loop(iterator, n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            total += step(next(iterator))
        return total

    return loop


def _dataset(matmuls_per_element: int, prefetch: bool):
    x = tf.random.stateless_normal([256, 256], seed=[3, 4]) / 16.0

    def element(_):
        return _chained_products(x, x, matmuls_per_element)

    dataset = tf.data.Dataset.range(10 * STEPS).map(element, num_parallel_calls=1)
    return dataset.prefetch(4) if prefetch else dataset


def _traced(loop, dataset) -> InputStall:
    iterator = iter(dataset)
    float(loop(iterator, tf.constant(2)))     # compile, and let the pipeline start
    return trace_input_stall(lambda: float(loop(iterator, tf.constant(STEPS))))


def test_a_slow_pipeline_shows_the_loop_waiting():
    stall = _traced(_loop(1), _dataset(60, prefetch=False))
    assert stall.batches == STEPS
    assert stall.share > 0.5, stall
    assert stall.wait_ms <= stall.wall_ms


def test_a_prefetched_pipeline_ahead_of_the_step_shows_almost_no_wait():
    stall = _traced(_loop(24), _dataset(1, prefetch=True))
    assert stall.batches == STEPS
    assert stall.share < 0.1, stall


def test_a_stretch_without_an_iterator_is_an_error():
    @tf.function
    def no_input():
        return tf.reduce_sum(tf.ones([8]))

    with pytest.raises(RuntimeError, match="no iterator GetNext events"):
        trace_input_stall(lambda: float(no_input()))
