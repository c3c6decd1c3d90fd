"""`run --tensorboard DIR`: each epoch's figures as TensorBoard scalars, written off the timed path.

Why a queue and one background thread: the MLPerf timed region runs from run_start to run_stop,
and every epoch's training and eval are timed inside it. Writing an event file costs TensorFlow
ops, a protobuf and a file write per scalar, which must not sit between two timed epochs. So the
runner only hands each finished epoch's `EpochStats` to a queue (a microsecond, after the epoch's
and the eval's clocks have stopped); the thread turns them into summaries and flushes the file,
so a TensorBoard open on DIR shows every epoch as it ends, and `close` (after run_stop) waits for
the last one and closes the file. docs/tensorboard.md lists the tags and what the cost measured.

The files go to DIR/<system_name>/result_<n>/, n being the run's number in the results tree, so
each result's curves sit beside no other run's. Only the chief has a result number; the other
workers of a multi-host run write nothing.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Callable

# (tag, EpochStats field) of every scalar, step = epoch.
SCALARS = (
    ("eval/hr@10", "hit_rate"),
    ("eval/ndcg@10", "ndcg"),
    ("eval/loss", "eval_loss"),
    ("train/loss", "loss"),
    ("train/examples_per_s", "examples_per_s"),
    ("time/train_s", "train_s"),      # the epoch's time: epoch_start .. epoch_stop
    ("time/eval_s", "eval_s"),        # its eval: eval_start .. eval_stop
)


def board_path(root: str | None, system_name: str, index: int | None) -> Path | None:
    """Where run `index`'s event files go; None when TensorBoard is off or this worker is no chief."""
    if root is None or index is None:
        return None
    return Path(root).resolve() / system_name / f"result_{index}"


def scalar_metadata() -> Any:
    """What marks a float32 summary as a TensorBoard scalar, byte for byte as TensorBoard's own
    `scalar` marks it (the scalars plugin, its version-0 content serialising to no bytes).

    Why not `tf.summary.scalar`: it is implemented by the tensorboard package, which TensorFlow no
    longer installs; `tf.summary.write` with this metadata writes the same event without it.
    Viewing the files needs TensorBoard (`pip install tensorboard`).
    """
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars", content=b""))


class EpochBoard:
    """The scalars of one run, written by a background thread; with `path` None it does nothing."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.problem: str | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if path is not None:
            self._thread = threading.Thread(target=self._write, args=(path,), name="tensorboard", daemon=True)
            self._thread.start()

    def add(self, stats: Any) -> None:
        """Queue one finished epoch (an `EpochStats`); returns at once."""
        if self._thread is not None:
            self._queue.put(stats)

    def close(self) -> str | None:
        """Write what is queued and close the file; what went wrong, in one sentence, if anything did."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        return self.problem

    def _write(self, path: Path) -> None:
        """The thread: every queued epoch until the None that `close` sends; stops writing at a failure."""
        import tensorflow as tf

        writer = self._attempt(lambda: tf.summary.create_file_writer(str(path)))
        while (stats := self._queue.get()) is not None:
            if writer is not None and self.problem is None:
                self._attempt(lambda: self._epoch(tf, writer, stats))
        if writer is not None:
            self._attempt(writer.close)

    @staticmethod
    def _epoch(tf: Any, writer: Any, stats: Any) -> None:
        metadata = scalar_metadata()
        # The default writer is per thread, so this thread sets its own.
        with writer.as_default():
            for tag, name in SCALARS:
                tf.summary.write(tag, tf.constant(getattr(stats, name), tf.float32), step=stats.epoch,
                                 metadata=metadata)
        writer.flush()

    def _attempt(self, work: Callable[[], Any]) -> Any:
        """`work()`, or None with the first failure kept in `problem`: a board must not fail the run."""
        try:
            return work()
        except Exception as exc:  # noqa: BLE001 - disk full, a removed folder: the run goes on
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.problem = self.problem or f"the TensorBoard scalars in {self.path} are incomplete ({first_line})."
            return None
