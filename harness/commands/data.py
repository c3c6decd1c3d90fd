"""`run_benchmark.py data`: fetch or generate a dataset, prepare it, and say what it holds.

Without a bench flag it prints the dataset's sizes, its eval-set statistics (from the eval
negatives of `--seed`, 0 by default: mean duplicates per eval row under the duplicate-mask
convention of docs/reference-facts.md §3, and the share of rows whose test item was drawn among its own
negatives), the verification status, the rating file's SHA-256, the preparation version and the
cache file. With `--json` the same as one JSON object on stdout, with the keys of `SUMMARY_KEYS`.

`--bench-csv` times the CSV path of preparation on a synthetic set written as ratings.csv (in a
fresh process, so its peak RSS is the preparation's own); `--bench-sampling` times the negative
generators on the prepared dataset. Both print seconds (wall and CPU) and are how the data
layer's budgets (at ml-20m scale: 20M ratings in < 60 s and < 4 GiB; an epoch of negatives plus
shuffle < 10 s; eval negatives < 30 s) are checked.

Nothing here imports TensorFlow, so the command answers as fast as the data allows.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.data import sampling, synthetic
from harness.data.download import cache_root
from harness.data.movielens import RatingFile
from harness.data.prepare import UNVERIFIED, PreparedData, load_dataset, prepare_rating_file
from harness.data.registry import CSV_FORMAT
from harness.core.errors import UserError
from harness.core.writable import scratch_dir, writing_to
from harness.core.process_usage import peak_rss_bytes
from harness.run.flags import one_seed

DEFAULT_DATASET = "synthetic-small"
SUMMARY_KEYS = (
    "dataset", "users", "items", "ratings", "train_positives", "eval_users", "eval_seed",
    "mean_duplicates_per_eval_row", "test_item_drawn_share", "verification", "sha256",
    "preparation_version", "heldout_sha256", "source", "cache_path",
)


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's own type
    """Add the `data` subcommand (harness.cli plug-in convention)."""
    p = subparsers.add_parser(
        "data", help="fetch or generate a dataset, prepare it and print its statistics",
        description="Fetch (or generate) and prepare a dataset, then print users, items, ratings, "
                    "training positives, eval-set statistics and verification status.")
    p.add_argument("--dataset", default=DEFAULT_DATASET,
                   help="ml-20m, ml-1m, ml-100k, ml-25m, ml-latest-small, synthetic-small, synthetic-ml20m "
                        f"or synthetic-ml20mx<k>x<m> (default {DEFAULT_DATASET})")
    p.add_argument("--data-dir", help="directory holding <name>.zip (checked against its MD5) or an extracted "
                                      "<name>/ folder (accepted as unverified); default: download")
    p.add_argument("--cache-dir", help="download and prepared-data cache (default $NCF_CACHE_DIR or "
                                       "~/.cache/ncf-benchmark)")
    p.add_argument("--mirror", help="base URL to download <name>.zip from instead of GroupLens "
                                    "(default $NCF_DATA_MIRROR)")
    p.add_argument("--seed", type=one_seed, default=0,
                   help="seed of the eval negatives behind the statistics, in 0..2^31-1 (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--bench-csv", action="store_true",
                   help="time preparation through the CSV path: write the (synthetic) dataset as ratings.csv "
                        "in a temporary directory and prepare it in a fresh process")
    p.add_argument("--bench-sampling", action="store_true",
                   help="time one epoch of training negatives + shuffle and the eval negatives")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `data`; warnings go to stderr as `warning: ...` lines."""
    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        print(f"warning: {message}", file=sys.stderr)

    def progress(message: str) -> None:
        print(f"{message} ...", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        if args.bench_csv or args.bench_sampling:
            report: dict[str, Any] = {"dataset": args.dataset}
            if args.bench_csv:
                report["bench_csv"] = bench_csv(args.dataset)
            if args.bench_sampling:
                data = load_dataset(args.dataset, args.data_dir, args.cache_dir, args.mirror, progress)
                report["bench_sampling"] = bench_sampling(data, args.seed)
        else:
            data = load_dataset(args.dataset, args.data_dir, args.cache_dir, args.mirror, progress)
            report = summary(data, args.seed)
    if args.json:
        print(json.dumps(report))
    else:
        _print_text(report)
    return 0


def summary(data: PreparedData, seed: int) -> dict[str, Any]:
    """The statistics `data` prints, keyed as in SUMMARY_KEYS."""
    from reference.eval_rows import duplicate_mask, eval_items

    negatives = sampling.eval_negatives(data, seed)
    mask = duplicate_mask(eval_items(negatives, data.test_items))
    drawn = (negatives == data.test_items[:, np.newaxis]).any(axis=1)
    report = {
        "dataset": data.name, "users": data.num_users, "items": data.num_items, "ratings": data.num_ratings,
        "train_positives": data.num_train, "eval_users": data.num_users, "eval_seed": seed,
        "mean_duplicates_per_eval_row": float(mask.sum(dtype=np.int64) / max(1, data.num_users)),
        "test_item_drawn_share": float(drawn.mean()) if drawn.size else 0.0,
        "verification": data.verification, "sha256": data.raw_sha256,
        "preparation_version": data.preparation_version, "heldout_sha256": data.heldout_sha256,
        "source": data.source, "cache_path": data.cache_path,
    }
    assert tuple(report) == SUMMARY_KEYS
    return report


def _timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_csv(name: str) -> dict[str, Any]:
    """Write synthetic dataset `name` as ratings.csv and time its preparation in a fresh process."""
    if not synthetic.is_synthetic(name):
        raise UserError(f"--bench-csv writes a synthetic dataset as CSV; {name!r} is not one (try synthetic-ml20m).")
    config = synthetic.parse_name(name)
    with scratch_dir("ncf-bench-csv-") as tmp:
        csv_path = Path(tmp) / "ratings.csv"
        with writing_to(tmp, "TMPDIR"):   # a full temporary area: the CSV is ~500 MB at ml-20m scale
            rows, write_s, _ = _timed(lambda: synthetic.write_csv(config, csv_path))
        csv_bytes = csv_path.stat().st_size
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            result = pool.apply(_prepare_csv_in_child, (str(csv_path), str(Path(tmp) / "cache")))
    return {"rows": rows, "csv_bytes": csv_bytes, "write_seconds": round(write_s, 2), **result}


def _prepare_csv_in_child(csv_path: str, cache_dir: str) -> dict[str, Any]:
    """CSV -> prepared arrays -> cache file, timed; runs in a fresh interpreter (see bench_csv)."""
    rating_file = RatingFile(Path(csv_path), None, CSV_FORMAT)
    data, wall, cpu = _timed(lambda: prepare_rating_file("bench-csv", rating_file, UNVERIFIED, cache_root(cache_dir)))
    return {"prepare_seconds": round(wall, 2), "prepare_cpu_seconds": round(cpu, 2),
            "peak_rss_mib": round(peak_rss_bytes() / (1 << 20), 1), "users": data.num_users, "items": data.num_items,
            "ratings": data.num_ratings, "train_positives": data.num_train}


def bench_sampling(data: PreparedData, seed: int) -> dict[str, Any]:
    """Time the per-dataset tables, two training epochs (negatives + shuffle) and the eval negatives.

    The second epoch is written over the first's arrays, as a run writes every epoch after its first.
    """
    _, tables_wall, tables_cpu = _timed(lambda: sampling.build_tables(data))
    first, epoch_wall, epoch_cpu = _timed(lambda: sampling.epoch_examples(data, seed, 1))
    _, again_wall, again_cpu = _timed(lambda: sampling.epoch_examples(data, seed, 2, out=first))
    _, eval_wall, eval_cpu = _timed(lambda: sampling.eval_negatives(data, seed))
    kernels = compare_kernels(data, seed, first)
    return {"workers": sampling.DEFAULT_WORKERS, "tables_seconds": round(tables_wall, 2),
            "tables_cpu_seconds": round(tables_cpu, 2), "epoch_examples": int(first[0].size),
            "epoch_seconds": round(epoch_wall, 2), "epoch_cpu_seconds": round(epoch_cpu, 2),
            "later_epoch_seconds": round(again_wall, 2), "later_epoch_cpu_seconds": round(again_cpu, 2),
            "eval_negatives": data.num_users, "eval_seconds": round(eval_wall, 2),
            "eval_cpu_seconds": round(eval_cpu, 2), **kernels,
            "peak_rss_mib": round(peak_rss_bytes() / (1 << 20), 1)}


def compare_kernels(data: PreparedData, seed: int, out: sampling.EpochArrays, rounds: int = 3) -> dict[str, Any]:
    """The numpy and the compiled epoch kernel on the same epochs, alternated, and the read floor.

    Round r renders epoch 3 + r with each kernel in turn (which goes first alternates), into
    recycled memory as a run does, and checks the two renderings are equal. The ratio is
    median numpy seconds / median compiled seconds; the floor (harness.measure.read_floor) is what
    an epoch's random reads alone take in this minute.
    """
    from harness.measure.read_floor import epoch_read_floor

    floor = epoch_read_floor(data)
    kernel = sampling.epoch_kernel(sampling.positive_set(data))
    report: dict[str, Any] = {"epoch_kernel": kernel, "read_floor_seconds": round(floor.seconds, 4),
                              "read_floor_ns_per_read": [round(floor.pair_read_ns, 1),
                                                         None if floor.bitmap_read_ns is None
                                                         else round(floor.bitmap_read_ns, 1)]}
    if kernel != "compiled":
        return report
    spare = tuple(array.copy() for array in out)   # memory already written, as an earlier epoch's
    seconds: dict[str, list[float]] = {"numpy": [], "compiled": []}
    for r in range(rounds):
        order = ("numpy", "compiled") if r % 2 == 0 else ("compiled", "numpy")
        rendered = {}
        for kernel, arrays in zip(order, (out, spare)):
            rendered[kernel], wall, _ = _timed(lambda: sampling.epoch_examples(data, seed, 3 + r, out=arrays,
                                                                              kernel=kernel))
            seconds[kernel].append(wall)
        if not all(np.array_equal(a, b) for a, b in zip(rendered["numpy"], rendered["compiled"])):
            raise RuntimeError(f"the compiled epoch kernel differs from numpy's on epoch {3 + r}")
    numpy_s, compiled_s = (float(np.median(seconds[k])) for k in ("numpy", "compiled"))
    report.update({"numpy_kernel_seconds": [round(x, 2) for x in seconds["numpy"]],
                   "compiled_kernel_seconds": [round(x, 2) for x in seconds["compiled"]],
                   "compiled_vs_numpy": round(numpy_s / compiled_s, 2),
                   "compiled_vs_read_floor": round(compiled_s / floor.seconds, 2)})
    return report


def _print_text(report: dict[str, Any], indent: str = "") -> None:
    width = max(len(key) for key in report)
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_text(value, indent + "  ")
        else:
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
            shown = f"{value:.6g}" if isinstance(value, float) else shown
            print(f"{indent}{key.replace('_', ' '):<{width}}  {shown}")
