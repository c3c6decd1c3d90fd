"""Child process for tests/distribute/test_distributed_mirrored.py: one device against MirroredStrategy.

Logical CPU devices can only be declared before TensorFlow initialises its runtime, which a
pytest process that already ran other TensorFlow tests has done; so the comparison runs here, in
a fresh interpreter: `python tests/support/distributed_mirrored_probe.py OUT.npz [--xla]`.

It builds the same small NeuMF (stateless initialisers: same seed, same weights) twice, once under
the default strategy (one device) and once under `harness.distribute.strategy.build_strategy("mirrored", ...)`
over 2 logical CPUs, then through the harness's own input pipeline and Trainer:
  * evaluates both on one random eval set (rows from `reference.eval_rows`, a user count that
    does not fill the last eval step, so padding rows are exercised too);
  * trains both for a few steps on the same examples at the same global batch (the last batch
    part padding), recording each step's loss;
and saves everything to OUT.npz; the test decides what must match. The plain reference metrics
on the whole eval set (no strategy, no sharding) are saved too, as the anchor for both.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

REPLICAS = 2
NUM_USERS, NUM_ITEMS = 37, 61
MF_DIM, LAYERS = 8, (16, 16, 8, 4)
EVAL_USERS_PER_REPLICA = 5          # 37 users over 2 replicas x 5 -> 4 steps, 3 padding rows
GLOBAL_BATCH = 64
TRAIN_STEPS = 4
TRAIN_EXAMPLES = GLOBAL_BATCH * (TRAIN_STEPS - 1) + 40   # the last batch is 24 rows of padding
SEED = 7


def configure_devices() -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)


def eval_set(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from reference.constants import NUM_EVAL_NEGATIVES
    from reference.eval_rows import duplicate_mask, eval_items

    negatives = rng.integers(0, NUM_ITEMS, size=(NUM_USERS, NUM_EVAL_NEGATIVES), dtype=np.int32)
    tests = rng.integers(0, NUM_ITEMS, size=NUM_USERS, dtype=np.int32)
    items = eval_items(negatives, tests)
    return items, duplicate_mask(items)


def reference_metrics(model, items: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """HR/NDCG sums on all rows at once with the plain reference metrics (no strategy)."""
    import tensorflow as tf

    from reference.constants import EVAL_ROW
    from reference.metrics import compute_top_k_and_ndcg

    users = np.repeat(np.arange(NUM_USERS, dtype=np.int32), EVAL_ROW)
    logits = model(tf.constant(users), tf.constant(items.reshape(-1)))
    in_top_k, ndcg, weights, _ = compute_top_k_and_ndcg(logits, tf.constant(mask.reshape(-1)), match_mlperf=True)
    w = tf.cast(weights, tf.float32)
    return np.array([float(tf.reduce_sum(in_top_k * w)), float(tf.reduce_sum(ndcg * w)), float(tf.reduce_sum(w))])


def run(strategy, num_replicas: int, items, mask, train, xla: bool) -> dict[str, np.ndarray]:
    import tensorflow as tf

    from harness.train.input_pipeline import eval_dataset, train_dataset
    from harness.train.trainer import Trainer
    from reference.model import NeuMF
    from reference.optimizer import AdamConfig

    with strategy.scope():
        model = NeuMF(NUM_USERS, NUM_ITEMS, mf_dim=MF_DIM, layers=LAYERS, seed=SEED)
    trainer = Trainer(strategy, model, AdamConfig(0.01), match_mlperf=True, xla=xla)
    out: dict[str, np.ndarray] = {"replicas": np.array(strategy.num_replicas_in_sync)}
    out["initial"] = np.concatenate([np.ravel(v.numpy()) for v in model.ordered_variables])

    ds, steps = eval_dataset(strategy, items, mask, EVAL_USERS_PER_REPLICA, num_replicas, 1, 0)
    sums = trainer.evaluate(ds, steps)
    out["eval"] = np.array([sums.hits, sums.ndcg, sums.weight, sums.hit_rate, sums.ndcg_mean])

    users, items_t, labels = train
    ds = train_dataset(strategy, users, items_t, labels, TRAIN_STEPS, GLOBAL_BATCH, 1)
    iterator = iter(ds)
    out["losses"] = np.array([float(trainer.train_steps(iterator, tf.constant(1))) for _ in range(TRAIN_STEPS)])
    out["step"] = np.array(int(trainer.step.numpy()))
    out["trained"] = np.concatenate([np.ravel(v.numpy()) for v in model.ordered_variables])
    out["adam_m"] = np.concatenate([np.ravel(v.numpy()) for v in trainer.m])
    out["adam_v"] = np.concatenate([np.ravel(v.numpy()) for v in trainer.v])
    # Every replica must hold the same values of a mirrored variable, not just the first one.
    locals_ = [np.ravel(t.numpy()) for v in model.ordered_variables
               for t in strategy.experimental_local_results(v)]
    spread = 0.0
    per_var = len(locals_) // len(model.ordered_variables)
    for i in range(0, len(locals_), per_var):
        for other in locals_[i + 1:i + per_var]:
            spread = max(spread, float(np.max(np.abs(other - locals_[i]))))
    out["replica_spread"] = np.array(spread)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--xla", action="store_true")
    args = parser.parse_args()
    configure_devices()
    import tensorflow as tf

    from harness.distribute.strategy import build_strategy
    from reference.model import NeuMF

    rng = np.random.default_rng(SEED)
    items, mask = eval_set(rng)
    train = (rng.integers(0, NUM_USERS, TRAIN_EXAMPLES, dtype=np.int32),
             rng.integers(0, NUM_ITEMS, TRAIN_EXAMPLES, dtype=np.int32),
             rng.integers(0, 2, TRAIN_EXAMPLES).astype(np.float32))

    single, _ = build_strategy("default", "cpu", 1, 1)
    mirrored, topology = build_strategy("mirrored", "cpu", REPLICAS, 1)
    results = {"single": run(single, 1, items, mask, train, args.xla),
               "mirrored": run(mirrored, topology.num_replicas, items, mask, train, args.xla)}
    anchor = reference_metrics(NeuMF(NUM_USERS, NUM_ITEMS, mf_dim=MF_DIM, layers=LAYERS, seed=SEED), items, mask)
    flat = {f"{name}_{key}": value for name, res in results.items() for key, value in res.items()}
    flat["reference_eval"] = anchor
    flat["topology"] = np.array([topology.num_replicas, topology.num_hosts, topology.task_index, topology.is_chief])
    flat["logical_cpus"] = np.array(len(tf.config.list_logical_devices("CPU")))
    np.savez(args.out, **flat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
