"""The TF Model Garden NCF peer's launcher: runs in the peer's own venv and never imports `harness`.

Why a launcher: the peer is the PyPI package tf-models-official 2.20.0
(`official.recommendation.ncf_keras_main`, custom training loop), run unmodified. As shipped it
does not start on TF 2.20, cannot bound a synthetic epoch and knows only ml-1m and ml-20m, so
this program applies runtime shims before the package's modules load (no installed file is
changed):
  1. a stub `tensorflow.estimator` holding `ModeKeys`, the only name neumf_model.py uses from it
     at import time (TF 2.16 and later ship no tf.estimator);
  2. `TFG_SYNTH_STEPS=N` sets constants.SYNTHETIC_BATCHES_PER_EPOCH (2,000 train plus 2,000 eval
     batches per synthetic epoch by default: hours on a 2-core CPU);
  3. `TFG_RAW_DATASET=<name>:<ratings.csv>` registers dataset <name> with its user and item
     counts after the package's own min-ratings filter (so `--dataset <name>` is accepted and its
     table sizes match), then converts the raw userId,movieId,rating,timestamp CSV into
     <data_dir>/<name>/ratings.csv with the package's own movielens._transform_csv, the call its
     ml-20m download makes.

What it measures, without changing what the peer does: each epoch's train and eval wall seconds
and HR@10 from the training loop's own "Done training/eval epoch" log records; examples/s from
its TimeHistory timestamps, the first interval (tracing, warm-up) left out; its own and other
processes' CPU cores from /proc/stat. The last line printed is `TFG_RESULT {json}`, which
harness.measure.peer reads.

Imports: the standard library at module level only, because harness.measure.peer imports this
module for its names; TensorFlow, absl, official.* and pandas only in the functions that run in
the peer's venv.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
import types
from typing import Any, Sequence

RESULT_PREFIX = "TFG_RESULT "
SYNTH_STEPS_ENV = "TFG_SYNTH_STEPS"
RAW_DATASET_ENV = "TFG_RAW_DATASET"


def machine_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot, from /proc/stat (None where it is unreadable)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children (the peer's data workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def users_and_items(ratings_csv: str, min_ratings: int) -> tuple[int, int]:
    """Distinct users and items of a userId,movieId,... CSV once users with fewer than `min_ratings` are dropped."""
    import pandas as pd

    frame = pd.read_csv(ratings_csv, usecols=["userId", "movieId"])
    counts = frame.groupby("userId").size()
    kept = frame[frame["userId"].isin(counts[counts >= min_ratings].index)]
    return int(kept["userId"].nunique()), int(kept["movieId"].nunique())


def epoch_seconds(first_step: float, train_done: Sequence[float], eval_done: Sequence[float]) -> dict[str, list[float]]:
    """Each epoch's wall seconds, from the previous eval's end (the first training step for epoch 1)
    to its own eval's end, and that split at the end of its training."""
    starts = [first_step, *eval_done[:-1]]
    return {"epoch_seconds": [round(end - start, 3) for end, start in zip(eval_done, starts)],
            "train_seconds": [round(end - start, 3) for end, start in zip(train_done, starts)],
            "eval_seconds": [round(end - start, 3) for end, start in zip(eval_done, train_done)]}


def training_rates(batch_size: int, marks: Sequence[Any]) -> dict[str, Any]:
    """Examples/s from TimeHistory's marks (`batch_index`, `timestamp`): over all logged intervals
    but the first (tracing, warm-up; None with fewer than two such intervals), and each of them."""
    def rate(a: Any, b: Any) -> float:
        return batch_size * (b.batch_index - a.batch_index) / (b.timestamp - a.timestamp)

    return {"exp_per_second_excl_first_interval": rate(marks[1], marks[-1]) if len(marks) > 2 else None,
            "interval_exp_per_second": [round(rate(a, b), 1) for a, b in zip(marks[1:-1], marks[2:])]}


class EpochRecorder:
    """An absl logging filter that notes when each epoch's training and eval end, and each eval's HR@10."""

    def __init__(self) -> None:
        self.train_done: list[float] = []
        self.eval_done: list[float] = []
        self.hit_rates: list[float] = []

    def filter(self, record: Any) -> bool:
        message = record.getMessage()
        if message.startswith("Done training epoch"):
            self.train_done.append(time.time())
        elif message.startswith("Done eval epoch"):
            self.eval_done.append(time.time())
            try:
                self.hit_rates.append(float(record.args[1]))   # hr_sum / hr_count, unrounded
            except (TypeError, ValueError, IndexError):
                self.hit_rates.append(float(message.rsplit("=", 1)[1]))
        return True


def install_estimator_stub(tf: Any) -> None:
    """Shim 1: `tensorflow.estimator` with the ModeKeys neumf_model.py reads at import time."""
    stub = types.ModuleType("tensorflow.estimator")
    stub.ModeKeys = types.SimpleNamespace(TRAIN="train", EVAL="eval", PREDICT="infer")
    sys.modules["tensorflow.estimator"] = stub
    tf.estimator = stub


def register_raw_dataset(movielens: Any, min_ratings: int, name: str, ratings_csv: str) -> None:
    """Shim 3, before the flags are defined: `name` becomes a dataset the peer accepts."""
    if name not in movielens.DATASETS:
        movielens.DATASETS.append(name)
    movielens.DATASET_TO_NUM_USERS_AND_ITEMS[name] = users_and_items(ratings_csv, min_ratings)


def convert_raw_ratings(movielens: Any, ratings_csv: str, data_dir: str, name: str) -> None:
    """Shim 3, once the flags are parsed: the raw CSV in the layout the peer reads, by its own converter."""
    folder = os.path.join(data_dir, name)
    os.makedirs(folder, exist_ok=True)
    movielens._transform_csv(  # pylint: disable=protected-access
        input_path=ratings_csv, output_path=os.path.join(folder, movielens.RATINGS_FILE),
        names=movielens.RATING_COLUMNS, skip_first=True, separator=",")


def train_and_report(raw_ratings: str | None, _argv: list[str]) -> None:
    """Run the peer's training with the parsed flags and print its `TFG_RESULT` line."""
    from absl import flags, logging
    from official.recommendation import movielens, ncf_keras_main

    options = flags.FLAGS
    if raw_ratings:
        convert_raw_ratings(movielens, raw_ratings, options.data_dir, options.dataset)
    recorder = EpochRecorder()
    logging.get_absl_logger().addFilter(recorder)
    start, busy0, own0 = time.time(), machine_busy_seconds(), own_cpu_seconds()
    stats = ncf_keras_main.run_ncf(options)
    total = time.time() - start
    busy1, own = machine_busy_seconds(), own_cpu_seconds() - own0
    marks = stats.get("step_timestamp_log") or []
    first_step = marks[0].timestamp if marks else start
    result = {
        "dataset": options.dataset,
        "synthetic": bool(options.use_synthetic_data),
        "batch_size": options.batch_size,
        "enable_xla": bool(options.enable_xla),
        "seed": options.seed,
        "epochs_run": len(recorder.eval_done),
        "hr_at_10_per_epoch": recorder.hit_rates,
        "final_hit_rate": float(stats["eval_hit_rate"]),
        **epoch_seconds(first_step, recorder.train_done, recorder.eval_done),
        "avg_exp_per_second_incl_warmup": stats.get("avg_exp_per_second"),
        **training_rates(options.batch_size, marks),
        "steps_logged": marks[-1].batch_index if marks else None,
        "startup_seconds": round(first_step - start, 3),
        "own_cpu_cores_avg": round(own / total, 2),
        "foreign_cpu_cores_avg": None if busy0 is None or busy1 is None else round((busy1 - busy0 - own) / total, 2),
        "total_run_seconds": round(total, 3),
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def launch() -> None:
    """Apply the shims in the order the package's imports need them, then run it under absl."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    install_estimator_stub(tf)
    from absl import app
    from official.recommendation import constants, movielens

    if os.environ.get(SYNTH_STEPS_ENV):
        constants.SYNTHETIC_BATCHES_PER_EPOCH = int(os.environ[SYNTH_STEPS_ENV])
    raw_ratings = None
    if os.environ.get(RAW_DATASET_ENV):
        name, _, raw_ratings = os.environ[RAW_DATASET_ENV].partition(":")
        register_raw_dataset(movielens, constants.MIN_NUM_RATINGS, name, raw_ratings)
    from official.recommendation import ncf_common   # defines --dataset from the datasets now known

    ncf_common.define_ncf_flags()
    app.run(functools.partial(train_and_report, raw_ratings))


if __name__ == "__main__":
    launch()
