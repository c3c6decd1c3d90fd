"""One traced stretch of TensorFlow work: its wall time and the profiler's record of it.

Why: the op profile (harness.measure.op_profile) and the input wait (harness.measure.input_stall) both read
events the TensorFlow profiler records while some steps run; starting it in a scratch
directory, stopping it even when the steps fail, and finding and parsing the XSpace file it
wrote is the same sequence for both, so it lives here once.
"""
from __future__ import annotations

import glob
import os
import time
from typing import Any, Callable

from harness.core.writable import scratch_dir


def trace(run: Callable[[], None], options: Any = None) -> tuple[float, Any | None]:
    """Run `run()` under the TensorFlow profiler: (wall seconds, the parsed XSpace, or None if
    the profiler wrote no trace file)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with scratch_dir("ncf-trace-") as logdir:
        tf.profiler.experimental.start(logdir, options=options)
        try:
            start = time.perf_counter()
            run()
            wall = time.perf_counter() - start
        finally:
            tf.profiler.experimental.stop()
        files = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
        if not files:
            return wall, None
        space = xplane_pb2.XSpace()
        with open(files[0], "rb") as f:
            space.ParseFromString(f.read())
    return wall, space
