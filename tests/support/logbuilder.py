"""A writer of valid `:::MLLOG` NCF logs for the compliance and log tests, each test breaking one thing.

`LogBuilder` lays out the events in the contract's key order (CONTRACT.md, "MLPerf log the runner
writes") and writes them through the official `mlperf_logging.mllog` encoder, so the tests judge
exactly the bytes a runner would produce. A test edits the event list (drop, change, duplicate,
move in time) and writes the file. tests/compliance/test_compliance_logbuilder.py checks that the
builder's own logs pass, so every broken-log test starts from a log known to be compliant.
"""
from __future__ import annotations

import io
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_logging.mllog import mllog

from reference import constants

POINT, START, END = "POINT_IN_TIME", "INTERVAL_START", "INTERVAL_END"
SHA_A, SHA_B = "a" * 64, "b" * 64
_logger_ids = itertools.count()


@dataclass
class Entry:
    key: str
    value: Any = None
    metadata: dict = field(default_factory=dict)
    event_type: str = POINT
    time_ms: float = 0.0


class LogBuilder:
    """A compliant NCF log of `epochs` epochs; `reach_target` decides success or max_epochs abort."""

    def __init__(self, epochs: int = 3, division: str = "closed", reach_target: bool = True,
                 users: int = 138_493, positives: int = 19_861_770, start_ms: float = 1.7e12,
                 step_ms: float = 1000.0) -> None:
        self.target = constants.MLPERF_TARGET_HR
        self.step_ms = step_ms
        top = self.target + 0.005 if reach_target else self.target - 0.01
        self.hit_rates = [0.4 + (top - 0.4) * (k + 1) / epochs for k in range(epochs)]
        header = [
            Entry("submission_benchmark", constants.BENCHMARK), Entry("submission_org", "test-org"),
            Entry("submission_division", division), Entry("submission_status", "onprem"),
            Entry("submission_platform", "test-system"), Entry("cache_clear", True),
            Entry("init_start", event_type=START),
        ]
        hyper = [
            ("seed", 42), ("global_batch_size", 65_536), ("opt_name", "adam"),
            ("opt_base_learning_rate", 0.0045), ("opt_adam_beta_1", 0.25), ("opt_adam_beta_2", 0.5),
            ("opt_adam_epsilon", 1e-8), ("preproc_hp_min_ratings", constants.MIN_RATINGS),
            ("preproc_hp_num_eval", constants.NUM_EVAL_NEGATIVES), ("preproc_hp_sample_eval_replacement", True),
            ("input_hp_num_neg", constants.NUM_NEG), ("input_hp_sample_train_replacement", True),
            ("eval_hp_num_users", users), ("eval_hp_num_neg", constants.NUM_EVAL_NEGATIVES),
            ("eval_hp_match_mlperf", True), ("model_hp_mf_dim", constants.MF_DIM),
            ("model_hp_mlp_layer_sizes", list(constants.MLP_LAYERS)), ("model_hp_loss_fn", constants.LOSS_FN),
            ("eval_target", self.target), ("train_samples", positives * (1 + constants.NUM_NEG)),
            ("eval_samples", users * constants.EVAL_ROW), ("dataset_name", "ml-20m"),
            ("dataset_verification", "verified"), ("dataset_sha256", SHA_A),
            ("dataset_preparation_version", "1"),
            ("dataset_heldout_sha256", "b" * 64), ("dataset_train_positives", positives),
            ("harness_version", "0.1.0"), ("harness_git_commit", "0123abc"),
            ("framework_version", "TensorFlow 2.21.0"), ("system_name", "test-system"),
            ("num_replicas", 1), ("num_hosts", 1), ("precision", "fp32"),
        ]
        body = [Entry(key, value) for key, value in hyper]
        body += [Entry("init_stop", event_type=END), Entry("run_start", event_type=START),
                 Entry("eval_set_sha256", SHA_B)]
        for epoch, hit_rate in enumerate(self.hit_rates, start=1):
            meta = {"epoch_num": epoch}
            body += [
                Entry("block_start", metadata={"first_epoch_num": epoch, "epoch_count": 1}, event_type=START),
                Entry("epoch_start", metadata=dict(meta), event_type=START),
                Entry("epoch_stop", metadata=dict(meta), event_type=END),
                Entry("eval_start", metadata=dict(meta), event_type=START),
                Entry("eval_accuracy", hit_rate, metadata=dict(meta)),
                Entry("eval_ndcg", hit_rate / 2, metadata=dict(meta)),
                Entry("eval_stop", metadata=dict(meta), event_type=END),
                Entry("block_stop", metadata={"first_epoch_num": epoch}, event_type=END),
            ]
        status = {"status": "success"} if reach_target else {"status": "aborted", "abort_reason": "max_epochs"}
        body.append(Entry("run_stop", metadata=status, event_type=END))
        self.entries = header + body
        self.retime()

    # ------------------------------------------------------------------ editing
    def retime(self, start_ms: float = 1.7e12) -> None:
        """Evenly spaced timestamps in list order (after inserting or removing entries)."""
        for number, entry in enumerate(self.entries):
            entry.time_ms = start_ms + number * self.step_ms

    def index(self, key: str, epoch: int | None = None, nth: int = 0) -> int:
        hits = [i for i, e in enumerate(self.entries)
                if e.key == key and (epoch is None or e.metadata.get("epoch_num") == epoch)]
        return hits[nth]

    def get(self, key: str, epoch: int | None = None) -> Entry:
        return self.entries[self.index(key, epoch)]

    def drop(self, key: str, epoch: int | None = None) -> "LogBuilder":
        del self.entries[self.index(key, epoch)]
        return self

    def set(self, key: str, value: Any, epoch: int | None = None) -> "LogBuilder":
        self.get(key, epoch).value = value
        return self

    def duplicate(self, key: str) -> "LogBuilder":
        """Log `key` a second time, right after the first one (same value, later time)."""
        at = self.index(key)
        original = self.entries[at]
        copy = Entry(original.key, original.value, dict(original.metadata), original.event_type)
        self.entries.insert(at + 1, copy)
        self.retime()
        return self

    # ------------------------------------------------------------------ output
    def text(self) -> str:
        stream = io.StringIO()
        logger = logging.getLogger(f"test_compliance_logbuilder.{next(_logger_ids)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        writer = mllog.MLLogger(logger=logger)
        emit = {POINT: writer.event, START: writer.start, END: writer.end}
        try:
            for entry in self.entries:
                emit[entry.event_type](key=entry.key, value=entry.value, metadata=dict(entry.metadata) or None,
                                       time_ms=entry.time_ms)
        finally:
            logger.removeHandler(handler)
        return stream.getvalue()

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.text(), encoding="utf-8")
        return path


# ---------------------------------------------------------------------- the builder's own logs
