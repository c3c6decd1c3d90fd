"""Feeding epochs and the eval set to the replicas through `distribute_datasets_from_function`.

Each host generates only its own shard of an epoch (the counter-based sampler makes any shard
exactly reproducible), pads it with zero-weight examples to a whole number of global steps, and
hands it to tf.data as ready-made batches: one dataset element per per-replica batch, so tf.data
does no per-example work. Every host runs the same number of steps, so collectives line up.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from reference import constants
from reference.eval_rows import padding_rows


# Fixed tf.data parallelism instead of AUTOTUNE. Slicing a ready-made batch costs well under a
# millisecond, so two parallel calls and a few batches of prefetch keep the step fed, and with
# autotuning off an iterator is torn down at once: with AUTOTUNE, dropping an epoch's iterator
# blocked for about 1.9 s in roughly half of the epochs (measured on ml-latest-small, where an
# epoch trains in 3.2 s), time that fell inside the timed region.
MAP_PARALLELISM = 2
PREFETCH_BATCHES = 4


def fixed_options(dataset: Any) -> Any:
    """`dataset` with tf.data autotuning off (see PREFETCH_BATCHES for why)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def steps_for(total: int, global_batch: int) -> int:
    """Global steps needed to cover `total` examples (the last one padded)."""
    return max(1, math.ceil(total / global_batch))


def _pad(array: np.ndarray, length: int, fill: Any = 0) -> np.ndarray:
    if len(array) == length:
        return array
    out = np.full((length,) + array.shape[1:], fill, dtype=array.dtype)
    out[: len(array)] = array
    return out


_POSITION_BITS = 32


def order_by_user(users: np.ndarray, items: np.ndarray, labels: np.ndarray,
                  valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One batch's rows reordered by user id (ties keep their order): the same batch, sorted.

    Why: the fused step gathers each example's user-side activations from the batch's distinct
    users and sums their gradients back per user (harness.train.fast.split_mlp). In user order both walk the
    per-user arrays front to back instead of jumping around 40 MB of them. On synthetic-ml20m
    batches held in memory, interleaved in one process, that took about 4% (median 18-22 ms) off
    a step here; through the whole pipeline the gain is smaller than this machine's noise, and
    `throughput --ablation` reports it as its own row.

    A batch's gradient is a sum over its examples, so the order changes only the float rounding
    of those sums; the batch, and so the run's sequence of batches, is the same. One sort of
    64-bit keys (user, position), which numpy vectorises, costs about 1.3 ms per 98,304 examples,
    off the training thread (tf.data).
    """
    keys = (users.astype(np.int64) << _POSITION_BITS) | np.arange(len(users), dtype=np.int64)
    keys.sort()
    order = keys & ((1 << _POSITION_BITS) - 1)
    return users.take(order), items.take(order), labels.take(order), valid.take(order)


def train_dataset(strategy: Any, users: np.ndarray, items: np.ndarray, labels: np.ndarray,
                  steps: int, global_batch: int, num_hosts: int, user_order: bool = False) -> Any:
    """This host's shard of one epoch as a distributed dataset of (users, items, labels, valid).

    The epoch's three columns become one tensor each (one copy, no padding copies); each dataset
    element is one per-replica batch sliced from them, the tail batch padded with zero-weight
    examples (valid = 0, user 0, item 0, label 0) inside the pipeline. Slicing runs in tf.data's
    own threads ahead of the training step (prefetch), so the step rarely waits for input; the
    padding never allocates an epoch-sized array (a padded `valid` column alone would be 400 MB
    at ml-20m). `user_order` sorts each per-replica batch by user (`order_by_user`), for the
    Trainer that asks for it (`Trainer.user_ordered_batches`).
    """
    import tensorflow as tf

    per_host = global_batch // num_hosts
    length = steps * per_host
    count = len(users)
    if count > length:
        raise ValueError(f"shard of {count} examples does not fit {steps} steps of {per_host}")
    # Copied into tensors here, before this returns, so the caller may overwrite its arrays with
    # the next epoch at once (the runner does: see sampling.epoch_examples's `out`). Pinned to
    # host memory, where tf.data reads them and where the dataset function used to make them;
    # outside it, eager TensorFlow may place a new tensor on an accelerator.
    with tf.device("CPU:0"):
        tensors = [tf.convert_to_tensor(np.asarray(column, dtype)) for column, dtype in
                   ((users, np.int32), (items, np.int32), (labels, np.float32))]

    def make(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = ctx.get_per_replica_batch_size(global_batch)

        def batch(index: tf.Tensor):
            start = tf.minimum(index * per_replica, count)
            stop = tf.minimum(start + per_replica, count)
            pad = [[0, per_replica - (stop - start)]]
            users_b, items_b, labels_b = (tf.ensure_shape(tf.pad(t[start:stop], pad), [per_replica])
                                          for t in tensors)
            valid = tf.ensure_shape(tf.pad(tf.ones([stop - start], tf.float32), pad), [per_replica])
            if not user_order:
                return users_b, items_b, labels_b, valid
            ordered = tf.numpy_function(order_by_user, [users_b, items_b, labels_b, valid],
                                        [tf.int32, tf.int32, tf.float32, tf.float32], stateful=False)
            return tuple(tf.ensure_shape(column, [per_replica]) for column in ordered)

        return fixed_options(tf.data.Dataset.range(length // per_replica)
                             .map(batch, num_parallel_calls=MAP_PARALLELISM, deterministic=True)
                             .prefetch(PREFETCH_BATCHES))

    return strategy.distribute_datasets_from_function(make)


def eval_shard(num_users: int, users_per_replica: int, num_replicas: int, num_hosts: int,
               host: int) -> tuple[slice, int, int]:
    """(this host's user slice, its padded row count, eval steps) for sharded evaluation."""
    per_step = users_per_replica * num_replicas
    steps = steps_for(num_users, per_step)
    per_host_rows = steps * per_step // num_hosts
    start = min(num_users, host * per_host_rows)
    stop = min(num_users, start + per_host_rows)
    return slice(start, stop), per_host_rows, steps


def eval_dataset(strategy: Any, eval_items: np.ndarray, dup_mask: np.ndarray, users_per_replica: int,
                 num_replicas: int, num_hosts: int, host: int) -> tuple[Any, int]:
    """This host's rows of the eval set, padded with zero-weight rows; returns (dataset, steps)."""
    import tensorflow as tf

    rows, length, steps = eval_shard(len(eval_items), users_per_replica, num_replicas, num_hosts, host)
    users = np.arange(rows.start, rows.stop, dtype=np.int32)
    items, mask = eval_items[rows], dup_mask[rows]
    n_pad = length - len(users)
    if n_pad:
        pad_items, pad_mask = padding_rows(n_pad)
        users = _pad(users, length)
        items = np.concatenate([items, pad_items.astype(items.dtype)])
        mask = np.concatenate([mask, pad_mask.astype(mask.dtype)])
    row = constants.EVAL_ROW

    def make(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        return fixed_options(tf.data.Dataset.from_tensor_slices(
            (users.reshape(-1, users_per_replica), items.reshape(-1, users_per_replica, row),
             mask.reshape(-1, users_per_replica, row))).prefetch(PREFETCH_BATCHES))

    return strategy.distribute_datasets_from_function(make), steps
