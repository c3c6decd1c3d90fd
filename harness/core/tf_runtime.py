"""Starting TensorFlow quietly and with a caching CPU allocator, and waiting for what it computes.

Allocator: TensorFlow's default CPU allocator takes every buffer from malloc, and glibc serves
anything above 32 MB with a fresh mmap and returns it with munmap. A NeuMF training step at
ml-20m size allocates several hundred MB of such buffers ([98,304, 256] activations and their
gradients, the distinct rows, XLA's temporary buffer), so every step faulted in and zeroed all
of those pages anew: on this project's 2-core KVM machine, 137,000 page faults and about 600 ms
of kernel time per step (the step took 940-1,020 ms). TensorFlow's BFC allocator
(TF_CPU_ALLOCATOR_USE_BFC=true, the allocator TensorFlow itself uses for GPU hosts' pinned
memory) keeps freed regions and hands them out again: about 50 faults per step and 540-635 ms
in the same A/B. `apply_runtime_environment` turns it on before TensorFlow starts unless the
user set the variable; it only changes where memory comes from, never a result. The run's
provenance records the setting, and the peer (harness.measure.peer) runs in the user's own environment.

Start-up: TensorFlow without its chatter on the user's terminal.

TensorFlow 2.21 writes oneDNN, CUDA-stub and cuInit lines straight to file descriptor 2 from C++
before absl logging is initialised, so TF_CPP_MIN_LOG_LEVEL cannot silence them. The import and
the first device enumeration run with descriptor 2 pointed at a temporary file; if either fails,
what TensorFlow printed is replayed to stderr, so nothing useful is ever hidden. A Ctrl-C is no
failure: nothing is replayed, and `harness.cli.main` prints only `error: interrupted.`.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any


# What this harness sets before TensorFlow starts, unless the user's environment already says.
RUNTIME_ENVIRONMENT = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
_USER_ENVIRONMENT: dict[str, str | None] = {}


def apply_runtime_environment() -> None:
    """Set RUNTIME_ENVIRONMENT's variables the user left unset (call before TensorFlow is imported)."""
    for key, value in RUNTIME_ENVIRONMENT.items():
        _USER_ENVIRONMENT.setdefault(key, os.environ.get(key))
        os.environ.setdefault(key, value)


def user_environment() -> dict[str, str]:
    """This process's environment without what `apply_runtime_environment` added (for other programs)."""
    env = dict(os.environ)
    for key, original in _USER_ENVIRONMENT.items():
        if original is None:
            env.pop(key, None)
        else:
            env[key] = original
    return env


def start_tensorflow() -> Any:
    """Import TensorFlow and enumerate devices quietly; return the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    apply_runtime_environment()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except KeyboardInterrupt:
            raise   # Ctrl-C: what TensorFlow printed so far is start-up chatter, not why it stopped
        except BaseException as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):
                # Ctrl-C inside a native module's initialisation surfaces as ImportError
                # ("initialization failed"); it is still the user's Ctrl-C, and harness.cli says so.
                raise KeyboardInterrupt from exc
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
