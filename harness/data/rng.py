"""splitmix64, the one integer hash behind every random choice of the harness.

Why one module: the samplers (harness.data.sampling), their compiled twin
(harness.data.epoch_kernel) and the held-out tie-break (harness.data.heldout) must agree on the
same constants bit for bit, and none of them should have to import another to get them.

Two forms, both on uint64 numpy arrays with arithmetic mod 2**64:
- `splitmix64`, the finaliser alone (xor-shift, multiply, xor-shift, multiply, xor-shift): a
  bijection the samplers apply to `counter * GOLDEN + key`, which already holds the increment;
- `splitmix64_step`, the full standard generator step (add GOLDEN, then the finaliser), the form
  published check values are given for (splitmix64_step(0) = 0xe220a8397b1dcdaf).
"""
from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)          # the generator's increment (2**64 / golden ratio)
ATTEMPT_STEP = np.uint64(0xD1B54A32D192ED03)    # the samplers' stride between rejection attempts
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (in place): a fast, well-distributed bijection.

    harness.data.epoch_kernel compiles this same function for scalars.
    """
    x ^= x >> np.uint64(30)
    x *= MIX1
    x ^= x >> np.uint64(27)
    x *= MIX2
    x ^= x >> np.uint64(31)
    return x


def splitmix64_step(x: np.ndarray) -> np.ndarray:
    """The full splitmix64 step of `x` (a new array): finaliser(x + GOLDEN), all mod 2**64."""
    return splitmix64(np.asarray(x, dtype=np.uint64) + GOLDEN)
