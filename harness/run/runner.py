"""The timed benchmark: init, then run_start .. run_stop, for each of `plan.runs` runs.

The order of work follows the MLPerf rules (docs/reference-facts.md §6):
  init_start .. init_stop   strategy, model, optimizer state, compiled steps, memory for the
                            first epoch's examples (untimed, logged)
  run_start                 eval negatives + duplicate mask are made here, inside the timed region
  every epoch               fresh training negatives and shuffle (generated one epoch ahead in a
                            background thread, still inside the timed region), training, then a
                            full eval of all users x 1,000 candidates
  run_stop                  success the moment HR@10 >= target; aborted at max epochs, on Ctrl-C /
                            SIGTERM (interrupted) or on an error, with the reason in the metadata
Only the chief writes the log and the summary; every run's log is checked right after run_stop.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.core.atomic import atomic_write_text
from harness.run.cache_clear import clear_page_cache
from harness.core.errors import UserError
from harness.compliance.checker import check_log
from harness.results import keys
from harness.results.mlperf_log import RunLog
from harness.run.plan import RunPlan
from harness.run.tensorboard import EpochBoard, board_path
from harness.core.process_usage import cpu_seconds, peak_rss_bytes
from reference import constants


class RunInterrupted(BaseException):
    """SIGTERM (or a second signal) turned into an exception so the log can be closed properly."""


@dataclass
class EpochStats:
    epoch: int
    train_s: float
    eval_s: float
    input_wait_s: float
    examples: int
    examples_per_s: float
    eval_pairs_per_s: float
    hit_rate: float
    ndcg: float
    loss: float
    eval_loss: float   # the seed's eval cross-entropy over the whole eval set (reference.metrics.eval_loss)


@dataclass
class RunOutcome:
    index: int | None
    seed: int
    status: str                   # success | aborted
    abort_reason: str | None      # max_epochs | interrupted | error | None
    epochs: list[EpochStats] = field(default_factory=list)
    time_to_train_s: float | None = None
    init_s: float | None = None
    log_path: str | None = None
    summary_path: str | None = None
    verdict: dict | None = None

    @property
    def best_hr(self) -> float:
        return max((e.hit_rate for e in self.epochs), default=0.0)


@dataclass
class RunProgress:
    """How far one run got: what an abort must still close, and the figures its summary reports."""

    run_start_time: float | None = None   # set once run_start is logged
    run_stopped: bool = False             # run_stop is logged
    abort_detail: str | None = None
    cpu_cores_used: float | None = None
    eval_set_sha256: str | None = None
    trainer: dict | None = None
    board: EpochBoard = field(default_factory=EpochBoard)   # --tensorboard, closed after run_stop


def eval_set_sha256(items: np.ndarray, mask: np.ndarray) -> str:
    """Fingerprint of the eval set: equal hashes prove two runs ranked the same candidates."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(items, dtype=np.int32).tobytes())
    digest.update(np.ascontiguousarray(mask, dtype=np.int8).tobytes())
    return digest.hexdigest()


class BenchmarkSession:
    """Loads the data and builds the strategy once, then executes the planned runs."""

    def __init__(self, plan: RunPlan, profile: Any, display: Any) -> None:
        self.plan = plan
        self.profile = profile
        self.display = display
        self.data = None
        self.strategy = None
        self.topology = None
        self.provenance: dict = {}

    # -- set-up (not part of any run's timed region) ----------------------------------------
    def build_trainer(self, seed: int, **options: Any) -> Any:
        """A fresh model (weights from `seed`) and its Trainer with the plan's settings.

        `options` override Trainer arguments (throughput's ablation switches fast paths off).
        """
        import tensorflow as tf

        from harness.train.fast import choice as fast_paths
        from harness.train.trainer import Trainer
        from reference.model import NeuMF
        from reference.optimizer import AdamConfig

        plan, data = self.plan, self.data
        dtype = {"fp32": tf.float32, "mixed_float16": tf.float16, "mixed_bfloat16": tf.bfloat16}[plan.precision]
        with self.strategy.scope():
            model = NeuMF(data.num_users, data.num_items, mf_dim=plan.mf_dim, layers=plan.layers,
                          seed=seed, compute_dtype=dtype)
        settings = dict(match_mlperf=plan.match_mlperf, xla=plan.xla,
                        paths=fast_paths.FastPaths.for_optimizer(plan.optimizer),
                        row_frequencies=fast_paths.example_frequencies(data, plan.num_neg))
        settings.update(options)
        return Trainer(self.strategy, model, AdamConfig(plan.learning_rate, plan.beta1, plan.beta2, plan.epsilon),
                       **settings)

    def start(self, provenance: bool = True) -> None:
        """Data, TensorFlow, strategy (and provenance): everything before the first init_start."""
        self.load_data()
        self.configure_tensorflow()
        self.build_strategy()
        if provenance:
            self.collect_provenance()

    def load_data(self) -> None:
        from harness.data.prepare import load_dataset

        self.display.note(f"preparing dataset {self.plan.dataset} ...")
        self.data = load_dataset(self.plan.dataset, data_dir=self.plan.data_dir,
                                 cache_dir=self.plan.cache_dir, mirror=self.plan.mirror)
        self.plan.with_data_verification(self.data.verification)
        from harness.data.sampling import build_tables

        # Positive-item lookup tables are per-dataset preparation (like the leave-one-out split),
        # not per-run work, so they are built before any run's timed region.
        build_tables(self.data)

    def configure_tensorflow(self) -> None:
        """Threads, logical devices and determinism must be set before TensorFlow starts up."""
        from harness.core.tf_runtime import start_tensorflow

        tf = start_tensorflow()

        threads = self.plan.cpu_threads or {}
        if threads.get("intra_op"):
            tf.config.threading.set_intra_op_parallelism_threads(int(threads["intra_op"]))
        if threads.get("inter_op"):
            tf.config.threading.set_inter_op_parallelism_threads(int(threads["inter_op"]))
        if self.plan.strategy == "mirrored" and self.plan.device == "cpu":
            cpus = tf.config.list_physical_devices("CPU")
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * self.plan.devices_per_host)
        if self.plan.deterministic:
            tf.config.experimental.enable_op_determinism()

    def build_strategy(self) -> None:
        from harness.distribute.strategy import build_strategy

        self.strategy, self.topology = build_strategy(
            self.plan.strategy, self.plan.device, self.plan.devices_per_host, self.plan.num_hosts,
            tpu_name=self.plan.tpu, worker_hosts=self.plan.worker_hosts, task_index=self.plan.task_index,
            cluster=self.plan.cluster_request)

    def collect_provenance(self) -> None:
        from harness.distribute.provenance import collect_provenance

        self.provenance = collect_provenance()

    # -- the runs ---------------------------------------------------------------------------
    def _results_tree(self) -> Any:
        from harness.results.tree import ResultsTree

        return ResultsTree(self.plan.results_root)

    def _claim_result(self) -> tuple[int | None, Path | None, Path | None]:
        if not self.topology.is_chief:
            return None, None, None
        n, log_path, summary_path = self._results_tree().claim_next_result(self.plan.system_name)
        return n, Path(log_path), Path(summary_path)

    def run_once(self, seed: int) -> RunOutcome:
        index, log_path, summary_path = self._claim_result()
        log = RunLog(log_path)
        outcome = RunOutcome(index=index, seed=seed, status="aborted", abort_reason=None,
                             log_path=str(log_path) if log_path else None,
                             summary_path=str(summary_path) if summary_path else None)
        previous = signal.getsignal(signal.SIGTERM)
        if threading_is_main():
            signal.signal(signal.SIGTERM, _raise_interrupted)
        progress = RunProgress(board=EpochBoard(board_path(self.plan.tensorboard_dir, self.plan.system_name, index)))
        try:
            self._execute(seed, log, outcome, progress)
        except (KeyboardInterrupt, RunInterrupted) as exc:
            self._abort(log, outcome, "interrupted", progress, str(exc) or type(exc).__name__)
            raise KeyboardInterrupt from exc
        except UserError as exc:
            self._abort(log, outcome, "error", progress, str(exc))
            raise
        except BrokenPipeError:
            # The reader of stdout left (`run ... | head`): the user stopped the run, as with
            # Ctrl-C; harness.cli.main then ends quietly with the closed-pipe status.
            self._abort(log, outcome, "interrupted", progress, "stdout was closed by its reader")
            raise
        except Exception as exc:  # noqa: BLE001 - every failure must still close the log
            reason = _describe_failure(exc)
            self._abort(log, outcome, "error", progress, reason)
            raise UserError(f"The run failed: {reason}") from exc
        finally:
            if threading_is_main():
                signal.signal(signal.SIGTERM, previous)
            log.close()
            if problem := progress.board.close():
                self.display.warn(problem)
        self._finish(outcome, progress, complete=True)
        return outcome

    def _abort(self, log: RunLog, outcome: RunOutcome, reason: str, progress: RunProgress, detail: str) -> None:
        outcome.status, outcome.abort_reason = "aborted", reason
        progress.abort_detail = detail
        if progress.run_start_time is not None and not progress.run_stopped:
            # run_start was logged: the log must end with run_stop, aborted, and the reason.
            log.end(keys.RUN_STOP, metadata={keys.STATUS: keys.ABORTED, keys.ABORT_REASON: reason})
            outcome.time_to_train_s = time.time() - progress.run_start_time
        log.close()
        self._finish(outcome, progress, complete=False)
        if outcome.index is not None and reason in ("interrupted", "error"):
            # An interrupted or crashed run is no result: move it out of the counted names.
            outcome.log_path = str(self._results_tree().mark_incomplete(outcome.index, self.plan.system_name))

    def _execute(self, seed: int, log: RunLog, outcome: RunOutcome, progress: RunProgress) -> None:
        """One run; `progress` records how far it got, for an abort and for the summary."""
        from harness.train.input_pipeline import eval_dataset, steps_for, train_dataset
        from reference.eval_rows import duplicate_mask, eval_items

        plan, data, topo = self.plan, self.data, self.topology
        cleared, why_not = clear_page_cache() if topo.is_chief else (False, "")
        if topo.is_chief and not cleared:
            self.display.warn(f"cache_clear logged as false: {why_not}")
        self._log_header(log, cleared)
        init_t0 = time.time()
        log.start(keys.INIT_START)
        self._log_hyperparameters(log, seed)
        trainer = self.build_trainer(seed)
        self._compile(trainer)
        progress.trainer = trainer.describe()
        from harness.data.sampling import epoch_length, written_epoch_arrays

        block = plan.batch_size // topo.num_hosts if topo.num_hosts > 1 else None
        # Memory for the first epoch, allocated and faulted in now (written_epoch_arrays says why);
        # every later epoch reuses the one before it.
        first_epoch_memory = written_epoch_arrays(epoch_length(data, plan.num_neg, topo.task_index,
                                                               topo.num_hosts, block))
        log.end(keys.INIT_STOP)
        outcome.init_s = time.time() - init_t0

        log.start(keys.RUN_START)
        run_t0 = time.time()
        progress.run_start_time = run_t0
        cpu0 = cpu_seconds()
        from harness.data.sampling import epoch_examples, eval_negatives

        negatives = eval_negatives(data, seed, plan.num_eval_negatives)
        items = eval_items(negatives, data.test_items)
        mask = duplicate_mask(items)
        progress.eval_set_sha256 = eval_set_sha256(items, mask)
        log.event(keys.EVAL_SET_SHA256, progress.eval_set_sha256)
        eval_ds, eval_steps = eval_dataset(self.strategy, items, mask, plan.eval_users_per_replica,
                                           topo.num_replicas, topo.num_hosts, topo.task_index)
        del negatives
        positives = len(data.train_users)
        total_examples = positives * (1 + plan.num_neg)
        steps = steps_for(total_examples, plan.batch_size)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="negatives")

        def generate(epoch: int, out: tuple):
            # Host h takes its block of every global step: any host count trains on the same batches.
            return epoch_examples(data, seed, epoch, plan.num_neg, shard=topo.task_index, num_shards=topo.num_hosts,
                                  block=block, out=out)

        try:
            upcoming = pool.submit(generate, 1, first_epoch_memory)
            del first_epoch_memory
            success = False
            for epoch in range(1, plan.max_epochs + 1):
                meta = {keys.EPOCH_NUM: epoch}
                log.start(keys.BLOCK_START, metadata={keys.FIRST_EPOCH_NUM: epoch, keys.EPOCH_COUNT: 1})
                log.start(keys.EPOCH_START, metadata=meta)
                t0 = time.time()
                arrays = upcoming.result()
                wait = time.time() - t0
                dataset = train_dataset(self.strategy, *arrays, steps, plan.batch_size, topo.num_hosts,
                                        user_order=trainer.user_ordered_batches)
                if epoch < plan.max_epochs:
                    # The dataset holds its own copy of the columns, so the next epoch reuses their memory.
                    upcoming = pool.submit(generate, epoch + 1, arrays)
                del arrays
                loss = self._train_epoch(trainer, dataset, steps, epoch)
                train_s = time.time() - t0
                log.end(keys.EPOCH_STOP, metadata=meta)
                log.start(keys.EVAL_START, metadata=meta)
                e0 = time.time()
                sums = trainer.evaluate(eval_ds, eval_steps)
                eval_s = time.time() - e0
                log.event(keys.EVAL_ACCURACY, sums.hit_rate, metadata=meta)
                log.event(keys.EVAL_NDCG, sums.ndcg_mean, metadata=meta)
                log.end(keys.EVAL_STOP, metadata=meta)
                log.end(keys.BLOCK_STOP, metadata={keys.FIRST_EPOCH_NUM: epoch})
                stats = EpochStats(epoch, train_s, eval_s, wait, total_examples, total_examples / train_s,
                                   data.num_users * constants.EVAL_ROW / eval_s, sums.hit_rate, sums.ndcg_mean, loss,
                                   sums.eval_loss)
                outcome.epochs.append(stats)
                progress.board.add(stats)   # after the epoch's and eval's clocks: a queue put, no I/O
                self.display.epoch_done(stats, plan.target)
                if sums.hit_rate >= plan.target:
                    success = True
                    break
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        outcome.time_to_train_s = time.time() - run_t0
        outcome.status = keys.SUCCESS if success else keys.ABORTED
        outcome.abort_reason = None if success else "max_epochs"
        meta = {keys.STATUS: outcome.status}
        if not success:
            meta[keys.ABORT_REASON] = "max_epochs"
        log.end(keys.RUN_STOP, metadata=meta)
        progress.run_stopped = True
        progress.cpu_cores_used = (cpu_seconds() - cpu0) / max(outcome.time_to_train_s, 1e-9)

    def _train_epoch(self, trainer: Any, dataset: Any, steps: int, epoch: int) -> float:
        import tensorflow as tf

        iterator = iter(dataset)
        done, total = 0, 0.0
        self.display.epoch_progress(epoch, 0, steps, self.plan.steps_per_call, self.plan.max_epochs)
        while done < steps:
            n = min(self.plan.steps_per_call, steps - done)
            total += float(trainer.train_steps(iterator, tf.constant(n)))
            done += n
            self.display.epoch_progress(epoch, done, steps, self.plan.steps_per_call, self.plan.max_epochs)
        return total / steps

    def _compile(self, trainer: Any) -> None:
        """Trace (and XLA-compile) the train and eval steps during init, leaving the model as it was.

        The warm-up batches are all padding (valid = 0): gradients are zero, so Adam's moments stay
        zero and every weight update is exactly 0; only the step counter moves, and it is reset.
        """
        import tensorflow as tf

        from harness.train.input_pipeline import eval_dataset, train_dataset
        from reference.eval_rows import padding_rows

        plan, topo = self.plan, self.topology
        empty = np.zeros(0, np.int32)
        warm = train_dataset(self.strategy, empty, empty, empty.astype(np.float32), 1, plan.batch_size, topo.num_hosts)
        trainer.train_steps(iter(warm), tf.constant(1))
        with self.strategy.scope():
            trainer.reset_optimizer_state()
        rows = plan.eval_users_per_replica * topo.num_replicas
        pad_items, pad_mask = padding_rows(rows)
        warm_eval, n = eval_dataset(self.strategy, pad_items, pad_mask, plan.eval_users_per_replica,
                                    topo.num_replicas, topo.num_hosts, topo.task_index)
        trainer.evaluate(warm_eval, n)

    # -- log and summary --------------------------------------------------------------------
    def _log_header(self, log: RunLog, cleared: bool) -> None:
        desc = getattr(self.profile, "description", {}) or {}
        log.event(keys.SUBMISSION_BENCHMARK, constants.BENCHMARK)
        log.event(keys.SUBMISSION_ORG, desc.get("submitter", "ncf-benchmark"))
        log.event(keys.SUBMISSION_DIVISION, self.plan.division)
        log.event(keys.SUBMISSION_STATUS, _submission_status(desc.get("status", "onprem")))
        log.event(keys.SUBMISSION_PLATFORM, self.plan.system_name)
        log.event(keys.CACHE_CLEAR, cleared)

    def _log_hyperparameters(self, log: RunLog, seed: int) -> None:
        plan, data, topo = self.plan, self.data, self.topology
        prov = self.provenance
        for key, value in [
            (keys.SEED, seed), (keys.GLOBAL_BATCH_SIZE, plan.batch_size), (keys.OPT_NAME, plan.optimizer),
            (keys.OPT_BASE_LR, plan.learning_rate), (keys.OPT_ADAM_BETA_1, plan.beta1),
            (keys.OPT_ADAM_BETA_2, plan.beta2), (keys.OPT_ADAM_EPSILON, plan.epsilon),
            (keys.PREPROC_HP_MIN_RATINGS, constants.MIN_RATINGS), (keys.PREPROC_HP_NUM_EVAL, plan.num_eval_negatives),
            (keys.PREPROC_HP_SAMPLE_EVAL_REPLACEMENT, True), (keys.INPUT_HP_NUM_NEG, plan.num_neg),
            (keys.INPUT_HP_SAMPLE_TRAIN_REPLACEMENT, True), (keys.EVAL_HP_NUM_USERS, data.num_users),
            (keys.EVAL_HP_NUM_NEG, plan.num_eval_negatives), (keys.EVAL_HP_MATCH_MLPERF, plan.match_mlperf),
            (keys.MODEL_HP_MF_DIM, plan.mf_dim), (keys.MODEL_HP_MLP_LAYER_SIZES, list(plan.layers)),
            (keys.MODEL_HP_LOSS_FN, constants.LOSS_FN), (keys.EVAL_TARGET, plan.target),
            (keys.TRAIN_SAMPLES, len(data.train_users) * (1 + plan.num_neg)),
            (keys.EVAL_SAMPLES, data.num_users * constants.EVAL_ROW),
            (keys.DATASET_NAME, data.name), (keys.DATASET_VERIFICATION, data.verification),
            (keys.DATASET_SHA256, data.raw_sha256), (keys.DATASET_PREPARATION_VERSION, data.preparation_version),
            (keys.DATASET_HELDOUT_SHA256, data.heldout_sha256),
            (keys.DATASET_TRAIN_POSITIVES, len(data.train_users)),
            (keys.HARNESS_VERSION, __version__), (keys.HARNESS_GIT_COMMIT, prov.get("git_commit", "unknown")),
            (keys.FRAMEWORK_VERSION, f"TensorFlow {prov.get('tensorflow_version', 'unknown')}"),
            (keys.SYSTEM_NAME, plan.system_name), (keys.NUM_REPLICAS, topo.num_replicas),
            (keys.NUM_HOSTS, topo.num_hosts), (keys.PRECISION, plan.precision), (keys.XLA, plan.xla),
        ]:
            log.event(key, value)

    def _finish(self, outcome: RunOutcome, progress: RunProgress, complete: bool) -> None:
        """Check the log (chief), then write the run summary beside it atomically."""
        if outcome.log_path is None:
            return
        verdict = check_log(outcome.log_path)
        outcome.verdict = {"passed": verdict.passed, "failures": list(verdict.failures),
                           "warnings": list(verdict.warnings), "division": verdict.division}
        from harness.distribute.provenance import host_fingerprint
        from harness.results.system_desc import SUMMARY_DETECTED_KEY
        from harness.run.profiles import detected_values

        summary = {
            "benchmark": constants.BENCHMARK, "complete": complete, "status": outcome.status,
            "abort_reason": outcome.abort_reason, "abort_detail": progress.abort_detail,
            "result_index": outcome.index, "seed": outcome.seed, "system_name": self.plan.system_name,
            "profile": self.plan.system, "division": self.plan.division, "open_reasons": self.plan.open_reasons,
            "dataset": {"name": self.data.name, "verification": self.data.verification,
                        "sha256": self.data.raw_sha256, "preparation_version": self.data.preparation_version,
                        "heldout_sha256": self.data.heldout_sha256, "users": self.data.num_users, "items": self.data.num_items,
                        "train_positives": int(len(self.data.train_users))},
            "target": self.plan.target, "target_status": self.plan.target_status,
            "target_note": self.plan.target_note, "time_to_train_s": outcome.time_to_train_s, "init_s": outcome.init_s,
            "epochs_run": len(outcome.epochs), "best_hit_rate": outcome.best_hr,
            "epochs": [asdict(e) for e in outcome.epochs],
            "eval_set_sha256": progress.eval_set_sha256, "trainer": progress.trainer,
            "peak_rss_bytes": peak_rss_bytes(), "cpu_cores_used": progress.cpu_cores_used,
            "host_fingerprint": host_fingerprint(), "plan": self.plan.to_dict(),
            SUMMARY_DETECTED_KEY: detected_values(self.plan.system_name, self.plan.num_hosts),
            "provenance": self.provenance, "compliance": outcome.verdict, "log": Path(outcome.log_path).name,
            "tensorboard_dir": str(progress.board.path) if progress.board.path else None,
        }
        atomic_write_text(outcome.summary_path, json.dumps(summary, indent=2, default=str) + "\n")


def _submission_status(status: str) -> str:
    """The log's status word; system descriptions may use the long form of newer rulesets."""
    long_forms = {"available on-premise": "onprem", "available cloud": "cloud"}
    return long_forms.get(status.strip().lower(), status)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise RunInterrupted(f"signal {signal.Signals(signum).name}")


def _describe_failure(exc: Exception) -> str:
    """One line for the log and the user; collective failures name the lost peer."""
    from harness.distribute.strategy import describe_distributed_failure

    distributed = describe_distributed_failure(exc)
    if distributed is not None:
        return distributed
    text = str(exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {message[:300]}"
