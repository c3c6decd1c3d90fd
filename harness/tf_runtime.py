"""Starting TensorFlow quietly, and waiting for what it computes.

Start-up: TensorFlow without its chatter on the user's terminal.

TensorFlow 2.21 writes oneDNN, CUDA-stub and cuInit lines straight to file descriptor 2 from C++
before absl logging is initialised, so TF_CPP_MIN_LOG_LEVEL cannot silence them. The import and
the first device enumeration run with descriptor 2 pointed at a temporary file; if either fails,
what TensorFlow printed is replayed to stderr, so nothing useful is ever hidden.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any


def start_tensorflow() -> Any:
    """Import TensorFlow and enumerate devices quietly; return the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf


def wait_for(value: Any) -> None:
    """Block until every tensor in `value` (any nest) is computed: timings must include the work."""
    import tensorflow as tf

    for tensor in tf.nest.flatten(value):
        if hasattr(tensor, "numpy"):
            tensor.numpy()
