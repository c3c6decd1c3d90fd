"""Running the TF Model Garden NCF peer: its own venv, one run per call, its result as a dataclass.

Why: `throughput --peer` (the peer's training rate) and `time-to-target` (the peer's time to the
target) compare this harness with the TF Model Garden's NCF (PyPI tf-models-official), measured
in the same invocation. The peer needs packages this harness does not (TF 2.20 with tf-keras,
pandas 2.3), so it gets a venv of its own, built on first use under the peer's home:
`$NCF_PEER_DIR`, else `<cache>/peer-tfg` (the cache of harness.data.download). Every run starts
harness/measure/peer_launcher.py in that venv with fresh data and model folders (no run reuses
another's prepared data or checkpoints), in the user's environment (not the settings the harness
gives its own TensorFlow; `env` adds to it), bounded in time, with its output kept in
`<home>/logs/`; the launcher's `TFG_RESULT {json}` line becomes a `PeerThroughput` or a
`PeerCurve`. One module runs the peer, so the two commands cannot drift apart in how they treat it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from harness.core.atomic import atomic_write_bytes
from harness.core.writable import require_writable_dir
from harness.data.download import cache_root
from harness.data.movielens import RatingFile, sha256_of
from harness.data.prepare import UnverifiedDataWarning, _locate
from harness.data.registry import get_spec
from harness.core.errors import UserError
from harness.measure import peer_launcher
from harness.measure.peer_launcher import RESULT_PREFIX, machine_busy_seconds
from harness.core.tf_runtime import user_environment

PEER_DIR_ENV = "NCF_PEER_DIR"
PEER_DATASET = "ml-latest-small"      # the only real dataset the peer is run on
PEER_TIMEOUT_S = 3600
QUIET_CORES = 0.3                     # wait_quiet_s: "quiet" is fewer busy cores than this
QUIET_WINDOW_S = 10.0
PEER_PACKAGES = ("tensorflow==2.20.0", "tf-keras==2.20.1", "pandas==2.3.3", "absl-py", "six", "scipy", "pyyaml",
                 "gin-config")
# Installed without its requirements: the full list (tf-text, opencv, ...) is not needed for NCF.
PEER_MODEL_GARDEN = "tf-models-official==2.20.0"
VENV_CHECK = "import tensorflow, tf_keras, pandas, official.recommendation"
_MODEL_FLAGS = ("--keras_use_ctl", "--ml_perf", "--num_factors", "64", "--layers", "256,256,128,64",
                "--num_gpus", "0", "--distribution_strategy", "one_device")
PEER_ENV_HELP = ("add this variable to the peer's environment (repeatable), e.g. TF_CPU_ALLOCATOR_USE_BFC=true "
                 "to give it the allocator this harness uses")


@dataclass(frozen=True)
class PeerThroughput:
    """One peer run on synthetic data at ml-20m's table sizes: its training rate, warm-up excluded."""

    examples_per_s: float        # over all logged intervals but the first; with too few, the average incl. warm-up
    best_interval: float | None  # examples/s of its fastest logged interval
    foreign_cores: float | None  # cores other processes used meanwhile (None without /proc/stat)
    batch: int
    xla: bool
    logged_steps: int | None
    log: Path


@dataclass(frozen=True)
class PeerCurve:
    """One peer run on ml-latest-small: HR@10 and wall seconds per epoch."""

    hr_per_epoch: tuple[float, ...]
    epoch_seconds: tuple[float, ...]   # train + eval, start-up excluded
    train_seconds: tuple[float, ...]
    eval_seconds: tuple[float, ...]
    startup_s: float                   # launch to the first training step
    foreign_cores: float | None
    seed: int
    log: Path


def parse_peer_env(pairs: list[str]) -> dict[str, str]:
    """--peer-env KEY=VALUE arguments as a dict; one sentence for a malformed one."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "").isalnum():
            raise UserError(f"--peer-env takes KEY=VALUE with a variable name as KEY, got {pair!r}.")
        env[key] = value
    return env


def peer_home() -> Path:
    """Where the peer's venv, logs and runs live: $NCF_PEER_DIR, else <cache>/peer-tfg.

    Probed for writing each time, so an unwritable home is one sentence before pip or a peer run.
    """
    chosen = os.environ.get(PEER_DIR_ENV)
    home = Path(chosen).expanduser() if chosen else cache_root(None) / "peer-tfg"
    return require_writable_dir(home, f"${PEER_DIR_ENV}")


# ---------------------------------------------------------------------------------- the venv

@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`: two commands never build the same venv at once."""
    with open(path, "a", encoding="ascii") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _venv_works(python: Path) -> bool:
    try:
        return subprocess.run([str(python), "-c", VENV_CHECK], capture_output=True, env=user_environment(),
                              check=False).returncode == 0
    except OSError:
        return False


def ensure_peer_venv(home: Path) -> Path:
    """The python of the peer's venv under `home`, built (pip, a few minutes) unless it already imports the peer."""
    venv = home / "venv"
    python = venv / "bin" / "python"
    (home / "logs").mkdir(parents=True, exist_ok=True)
    with _locked(home / ".venv.lock"):
        if _venv_works(python):
            return python
        print(f"installing the TF Model Garden peer into {venv} (pip, a few minutes, once)", file=sys.stderr,
              flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        log = home / "logs" / "pip.log"
        steps = ([sys.executable, "-m", "venv", str(venv)],
                 [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES],
                 [str(python), "-m", "pip", "install", "-q", "--no-deps", PEER_MODEL_GARDEN])
        with open(log, "w", encoding="utf-8") as out:
            for step in steps:
                out.write(f"$ {shlex.join(step)}\n")
                out.flush()
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, env=user_environment(),
                                  check=False).returncode != 0:
                    raise UserError(f"installing the TF Model Garden peer failed; its output is in {log}.")
    return python


# ---------------------------------------------------------------------------------- the data

def peer_ratings(data_dir: str | os.PathLike | None, cache_dir: str | os.PathLike | None) -> Path:
    """ml-latest-small's ratings.csv for the peer, found as the harness finds the dataset.

    With `data_dir`: its ml-latest-small.zip, its extracted ml-latest-small/ratings.csv, or
    `data_dir` itself being that folder. Without: the zip a run of ours downloaded into the
    cache. A zip's member is extracted once into the peer's home.
    """
    spec = get_spec(PEER_DATASET)
    if data_dir is not None:
        with warnings.catch_warnings():   # whether the peer's data is verified is not reported
            warnings.simplefilter("ignore", UnverifiedDataWarning)
            rating_file, _ = _locate(spec, data_dir, cache_root(cache_dir), None, None)
    else:
        archive = cache_root(cache_dir) / "downloads" / f"{spec.name}.zip"
        if not archive.is_file():
            raise UserError(f"the peer needs {spec.name}'s ratings and {archive} is absent; pass --data-dir with "
                            f"{spec.name}.zip or an extracted {spec.name}/ folder.")
        rating_file = RatingFile(archive, spec.member, spec.format)
    if rating_file.member is None:
        return rating_file.path
    extracted = peer_home() / "ratings" / f"{spec.name}-{sha256_of(rating_file)[:16]}.csv"
    if not extracted.is_file():
        with rating_file.open() as member:
            atomic_write_bytes(extracted, member.read())
    return extracted


# ---------------------------------------------------------------------------------- the runs

def wait_until_quiet(limit_s: float) -> None:
    """Wait up to `limit_s` (in windows of QUIET_WINDOW_S) until the machine uses fewer than QUIET_CORES."""
    waited, busy = 0.0, None
    while waited < limit_s:
        before = machine_busy_seconds()
        time.sleep(QUIET_WINDOW_S)
        after = machine_busy_seconds()
        if before is None or after is None:
            return
        busy = (after - before) / QUIET_WINDOW_S
        if busy < QUIET_CORES:
            return
        waited += QUIET_WINDOW_S
    if busy is not None:
        print(f"the machine is still busy ({busy:.2f} cores) after {waited:.0f} s; running the peer anyway",
              file=sys.stderr, flush=True)


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _read_result(log: Path) -> dict[str, Any]:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
             if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise UserError(f"the peer's log {log} holds no {RESULT_PREFIX.strip()} line: {_tail(log)}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def _environment(env: dict[str, str] | None, **launcher_env: str) -> dict[str, str]:
    """The user's environment plus `env`, on the CPU, unbuffered, plus the launcher's own settings."""
    environment = {**user_environment(), **(env or {})}
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment.update(CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1", **launcher_env)
    return environment


def _run(name: str, flags: list[str], environment: dict[str, str], wait_quiet_s: float) -> tuple[dict[str, Any], Path]:
    """Run the launcher once with `flags`; its TFG_RESULT fields and its log."""
    home = peer_home()
    python = ensure_peer_venv(home)
    wait_until_quiet(wait_quiet_s)
    for folder in ("logs", "runs"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    log = home / "logs" / f"{name}_{datetime.now():%Y%m%d-%H%M%S-%f}.log"
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=home / "runs") as run_dir:
        command = [str(python), peer_launcher.__file__, *flags, "--data_dir", f"{run_dir}/data",
                   "--model_dir", f"{run_dir}/model"]
        with open(log, "w", encoding="utf-8") as out:
            out.write(f"peer command: {shlex.join(command)}\n")
            out.flush()
            try:
                code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=environment,
                                      timeout=PEER_TIMEOUT_S, check=False).returncode
            except subprocess.TimeoutExpired as exc:
                raise UserError(f"the peer did not finish within {PEER_TIMEOUT_S} s (log {log}): {_tail(log)}") from exc
    if code != 0:
        raise UserError(f"the peer failed (exit {code}, log {log}): {_tail(log)}")
    return _read_result(log), log


def run_peer_throughput(batch: int, xla: bool, steps: int = 30, wait_quiet_s: float = 0,
                        env: dict[str, str] | None = None) -> PeerThroughput:
    """The peer's training rate on `steps` synthetic batches of `batch` (ml-20m's table sizes, fp32).

    XLA: `--enable_xla` only calls tf.config.optimizer.set_jit(True), which clusters nothing on a
    CPU-only machine, so `--tf_xla_cpu_global_jit` is added to TF_XLA_FLAGS as well.
    """
    environment = _environment(env, **{peer_launcher.SYNTH_STEPS_ENV: str(steps)})
    if xla:
        environment["TF_XLA_FLAGS"] = f"{environment.get('TF_XLA_FLAGS', '')} --tf_xla_cpu_global_jit".strip()
    flags = [*_MODEL_FLAGS, "--seed", "0", "--use_synthetic_data", "--dataset", "ml-20m", "--batch_size", str(batch),
             "--eval_batch_size", "1000", "--train_epochs", "1", "--log_steps", "5", *(["--enable_xla"] if xla else [])]
    result, log = _run(f"throughput_bs{batch}_xla{int(xla)}", flags, environment, wait_quiet_s)
    rate = result["exp_per_second_excl_first_interval"]
    if rate is None:
        rate = result["avg_exp_per_second_incl_warmup"]
    if rate is None:
        raise UserError(f"the peer logged too few steps for a training rate (log {log}).")
    intervals = result["interval_exp_per_second"]
    return PeerThroughput(examples_per_s=float(rate), best_interval=max(intervals) if intervals else None,
                          foreign_cores=result["foreign_cpu_cores_avg"], batch=int(result["batch_size"]),
                          xla=bool(result["enable_xla"]), logged_steps=result["steps_logged"], log=log)


def run_peer_mlsmall(ratings_csv: Path, epochs: int, seed: int = 0, env: dict[str, str] | None = None,
                     wait_quiet_s: float = 0) -> PeerCurve:
    """The peer's HR@10 curve on ml-latest-small (`ratings_csv`, see peer_ratings), MLPerf model, batch 2,048."""
    if not Path(ratings_csv).is_file():
        raise UserError(f"the peer's ratings file {ratings_csv} is absent.")
    flags = [*_MODEL_FLAGS, "--seed", str(seed), "--dataset", PEER_DATASET, "--nodownload_if_missing",
             "--batch_size", "2048", "--learning_rate", "0.0005", "--eval_batch_size", "100000",
             "--train_epochs", str(epochs), "--log_steps", "50"]
    environment = _environment(env, **{peer_launcher.RAW_DATASET_ENV: f"{PEER_DATASET}:{Path(ratings_csv).resolve()}"})
    result, log = _run(f"mlsmall_e{epochs}_s{seed}", flags, environment, wait_quiet_s)
    return _curve(result, log)


def read_curve(log: Path) -> PeerCurve:
    """The curve of an earlier `run_peer_mlsmall` from its log."""
    return _curve(_read_result(log), log)


def _curve(result: dict[str, Any], log: Path) -> PeerCurve:
    try:
        return PeerCurve(hr_per_epoch=tuple(result["hr_at_10_per_epoch"]), epoch_seconds=tuple(result["epoch_seconds"]),
                         train_seconds=tuple(result["train_seconds"]), eval_seconds=tuple(result["eval_seconds"]),
                         startup_s=float(result["startup_seconds"]), foreign_cores=result["foreign_cpu_cores_avg"],
                         seed=int(result["seed"]), log=log)
    except KeyError as exc:
        raise UserError(f"the peer's {RESULT_PREFIX.strip()} line in {log} lacks {exc.args[0]}.") from None
