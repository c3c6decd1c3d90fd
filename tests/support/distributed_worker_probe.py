"""One worker of a two-process MultiWorkerMirroredStrategy job, for tests/distribute/test_distributed_multiworker.py.

`python tests/support/distributed_worker_probe.py HOST:PORT,HOST:PORT TASK_INDEX [options]` builds the
strategy with `harness.distribute.strategy.build_strategy` (so with the harness's failure timeouts), a small
NeuMF and the harness Trainer, then trains on its own shard one step at a time, printing
  ready <replicas> <hosts> <task_index> <is_chief>
  step <k> <global loss>
after each step, and `done` at the end (exit 0). When a step fails it prints
  failed <seconds since the last completed step> <describe_distributed_failure(...) or the error>
and exits 3. `--stall-at K --stall-s S` makes this worker sleep S seconds (alive, heartbeating)
before step K, as a worker stuck outside the collective would; `--collective-timeout` shortens
harness.distribute.strategy.COLLECTIVE_TIMEOUT_S so that case can be tested quickly.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

GLOBAL_BATCH = 64
NUM_USERS, NUM_ITEMS = 40, 50


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("worker_hosts")
    parser.add_argument("task_index", type=int)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--step-sleep", type=float, default=0.2)
    parser.add_argument("--stall-at", type=int, default=-1)
    parser.add_argument("--stall-s", type=float, default=0.0)
    parser.add_argument("--collective-timeout", type=int)
    args = parser.parse_args()

    import harness.distribute.strategy as strategy_module

    if args.collective_timeout:
        strategy_module.COLLECTIVE_TIMEOUT_S = args.collective_timeout
    strategy, topo = strategy_module.build_strategy(
        "multi_worker_mirrored", "cpu", 1, 2, worker_hosts=args.worker_hosts.split(","), task_index=args.task_index)
    print(f"ready {topo.num_replicas} {topo.num_hosts} {topo.task_index} {int(topo.is_chief)}", flush=True)

    import tensorflow as tf

    from harness.train.input_pipeline import train_dataset
    from harness.train.trainer import Trainer
    from reference.model import NeuMF
    from reference.optimizer import AdamConfig

    with strategy.scope():
        model = NeuMF(NUM_USERS, NUM_ITEMS, mf_dim=4, layers=(8, 8, 4), seed=3)
    trainer = Trainer(strategy, model, AdamConfig(0.01))
    rng = np.random.default_rng(100 + topo.task_index)
    n = GLOBAL_BATCH // topo.num_hosts * args.steps
    dataset = train_dataset(strategy, rng.integers(0, NUM_USERS, n, dtype=np.int32),
                            rng.integers(0, NUM_ITEMS, n, dtype=np.int32),
                            rng.integers(0, 2, n).astype(np.float32), args.steps, GLOBAL_BATCH, topo.num_hosts)
    iterator = iter(dataset)
    last = time.monotonic()
    for k in range(args.steps):
        if k == args.stall_at:
            time.sleep(args.stall_s)
        try:
            loss = float(trainer.train_steps(iterator, tf.constant(1)))
        except Exception as exc:  # noqa: BLE001 - the test judges what was reported
            reason = strategy_module.describe_distributed_failure(exc) or f"{type(exc).__name__}: {exc}"
            print(f"failed {time.monotonic() - last:.2f} {' '.join(reason.split())}", flush=True)
            return 3
        last = time.monotonic()
        print(f"step {k} {loss:.9g}", flush=True)
        time.sleep(args.step_sleep)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
