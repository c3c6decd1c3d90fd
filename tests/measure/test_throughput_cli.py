"""`run_benchmark.py throughput`: dry runs for every kind of profile, user errors, one tiny real run.

Why: the dry run is the only throughput output GPU and TPU profiles get here, so what it says
must be what the Trainer would do (both read harness.train.fast.choice); the real run must produce every
figure the report promises. No test asserts a speed: figures depend on the machine and its load.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.train.fast import choice as fast_paths
from harness.cli import main

REPO = Path(__file__).resolve().parents[2]


def dry_run(capsys, *flags: str) -> dict:
    assert main(["throughput", "--dry-run", "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_cpu_profile_runs_fused_dense(capsys):
    out = dry_run(capsys, "--system", "cpu", "--dataset", "synthetic-ml20m")
    assert out["trainer"]["path"] == "fused"
    assert out["trainer"]["optimizer_impl"] == "dense"
    assert out["trainer"]["user_ordered_batches"] is True
    assert out["trainer"]["loss_scale"] is None
    assert out["plan"]["batch_size"] == 98304


def test_gpu_profile_on_paper(capsys):
    out = dry_run(capsys, "--system", "gpu-h100-x8", "--dataset", "ml-20m")
    assert out["trainer"]["path"] == "distributed"            # 8 replicas: all-reduce path
    assert out["trainer"]["optimizer_impl"] == "dense"
    assert out["trainer"]["loss_scale"] == "dynamic"           # mixed_float16
    assert out["trainer"]["eval_output_layer"] == "float32"
    assert out["plan"]["batch_size"] == 1048576 and out["plan"]["xla"] is True


def test_tpu_profile_on_paper(capsys):
    out = dry_run(capsys, "--system", "tpu-v3-8", "--dataset", "ml-20m")
    assert out["trainer"]["path"] == "distributed"
    assert out["trainer"]["loss_scale"] is None                # bfloat16 needs none


def test_dry_run_table_mentions_missing_hardware(capsys):
    assert main(["throughput", "--dry-run", "--system", "gpu-h100-x8", "--dataset", "ml-20m"]) == 0
    text = " ".join(capsys.readouterr().out.split())        # undo the table's line wrapping
    assert "measurable only where that hardware is present" in text


def test_user_errors(capsys):
    assert main(["throughput", "--system", "cpu", "--steps", "1"]) == 2
    assert "argument --steps: must be at least 2" in capsys.readouterr().err
    assert main(["throughput", "--system", "cpu", "--peer-rounds", "3"]) == 2
    assert "--peer-rounds must be at least 1 and needs --peer" in capsys.readouterr().err
    assert main(["throughput", "--system", "cpu", "--peer-env", "A=1"]) == 2
    assert "--peer-env needs --peer" in capsys.readouterr().err
    assert main(["throughput", "--system", "cpu", "--peer", "--peer-env", "NOVALUE"]) == 2
    assert "--peer-env takes KEY=VALUE" in capsys.readouterr().err


def test_each_peer_run_is_held_against_the_two_measurements_of_ours_around_it():
    from harness.measure.throughput import peer_ratios

    # ours 200k, peer 140k, ours 220k, peer 160k, ours 240k, peer 100k, ours 180k
    ratios = peer_ratios([200e3, 220e3, 240e3, 180e3], [140e3, 160e3, 100e3])
    assert ratios["training_vs_peer_rounds"] == pytest.approx([210 / 140, 230 / 160, 210 / 100])
    assert ratios["training_vs_peer"] == pytest.approx(1.5)   # the median round, not the mean
    assert peer_ratios([200e3, 220e3], [140e3])["training_vs_peer"] == pytest.approx(1.5)


def test_fast_path_rules():
    assert fast_paths.optimizer_impl_for("adam") == "auto"
    assert fast_paths.optimizer_impl_for("lazy_adam") == "lazy_adam"
    assert fast_paths.choose_optimizer_impl("auto", fused=True, regularised=False) == "dense"
    assert fast_paths.choose_optimizer_impl("lazy_exact", fused=True, regularised=False) == "lazy_exact"
    assert fast_paths.choose_optimizer_impl("auto", fused=False, regularised=False) == "dense"
    with pytest.raises(ValueError):
        fast_paths.choose_optimizer_impl("lazy_adam", fused=False, regularised=False)
    assert not fast_paths.fused_step_applies(True, 1, tpu=True)
    assert fast_paths.loss_scaling_for("mixed_bfloat16") is None


@pytest.mark.slow
def tiny_throughput(tmp_path, steps: int, flag: str, timeout: int, system: str = "cpu") -> dict:
    """The JSON report of a real `throughput` on synthetic-small, in a fresh interpreter (thread
    settings must precede TensorFlow's start)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "NCF_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_benchmark.py"), "throughput", "--system", system, "--dataset",
         "synthetic-small", "--steps", str(steps), "--eval-sample", "100", "--seed", "1", flag, "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_two_replicas_get_their_in_memory_batches_and_a_traced_wait(tmp_path):
    """A mirrored profile's split: every replica's part of a step fed from memory as the pipeline
    feeds it, and one GetNext per replica per traced step."""
    report = tiny_throughput(tmp_path, 4, "--check-eval", timeout=300, system="cpu-mirrored-x2")
    split = report["split"]
    assert report["trainer"]["path"] == "distributed"
    assert report["eval"]["reference_check"]["identical_hr"]
    assert split["step_in_memory_ms"] > 0 and len(split["input_cost_rounds_ms"]) == 3
    assert split["input_wait_get_next_calls"] >= 1 and 0 <= split["input_wait_share"] <= 1


@pytest.mark.slow
def test_tiny_real_measurement_reports_every_figure(tmp_path):
    report = tiny_throughput(tmp_path, 2, "--op-profile", timeout=240)
    assert report["trainer"]["optimizer_impl"] == "dense"
    assert report["matmul_gflops"] > 0
    assert report["training"][0]["examples_per_s"] > 0 and report["eval"]["pairs_per_s"] > 0
    assert report["training"][0]["timing"]["page_faults"] >= 0
    assert report["runtime_environment"] == {"TF_CPU_ALLOCATOR_USE_BFC": os.environ["TF_CPU_ALLOCATOR_USE_BFC"]}
    split = report["split"]
    assert len(split["input_cost_rounds_ms"]) == len(split["optimizer_rounds_ms"]) == 3
    assert split["input_cost_ms"] == max(0.0, sorted(split["input_cost_rounds_ms"])[1])   # the paired median
    for key in ("input_ms", "forward_backward_ms", "optimizer_ms", "input_wait_ms", "input_cost_ms",
                "pipeline_step_ms", "input_wait_traced_step_ms"):
        assert split[key] is not None and split[key] >= 0, key
    # The traced stretch: one GetNext per step, and the wait is part of the traced time.
    assert split["input_wait_get_next_calls"] >= 1
    assert 0 <= split["input_wait_share"] <= 1
    assert split["input_wait_ms"] <= split["input_wait_traced_step_ms"]
    epoch = report["epoch_seconds"]
    for key in ("negatives_and_shuffle_standalone", "input", "forward_backward", "optimizer", "input_wait",
                "input_cost", "training", "eval"):
        assert epoch[key] is not None and epoch[key] >= 0, key
    assert 0 < report["ratios"]["training_vs_matmul"] and 0 < report["ratios"]["eval_vs_matmul"]
    assert report["epoch_kernel"] == "compiled" and report["negatives_read_floor"]["seconds"] > 0
    assert report["ratios"]["negatives_vs_read_floor"] > 0
    assert 0.0 <= report["eval"]["hit_rate"] <= 1.0
    ops = report["op_profile"]
    assert ops["available"], ops.get("reason")
    assert {"matmul", "optimizer", "gather"} <= set(ops["categories"]), ops["categories"]
    assert ops["traced_ms"] > 0 and all(op["op_type"] for op in ops["top"][:3]), ops["top"][:3]


@pytest.mark.slow
def test_tiny_ablation_interleaves_every_variant(tmp_path):
    """Every variant is timed in each round; ratios are per-round medians against the reference."""
    rows = tiny_throughput(tmp_path, 3, "--ablation", timeout=400)["ablation"]
    assert [row["variant"].split(" (")[0] for row in rows] == [
        "reference path", "+ fused XLA step", "+ split first layer", "+ batches ordered by user",
        "+ exact lazy Adam"]
    assert rows[0]["training_x_reference"] == rows[0]["eval_x_reference"] == 1.0
    for row in rows:
        assert len(row["rounds"]) == 3, row["variant"]
        assert all(r["examples_per_s"] > 0 and r["pairs_per_s"] > 0 for r in row["rounds"])
        assert min(r["examples_per_s"] for r in row["rounds"]) <= row["examples_per_s"] \
            <= max(r["examples_per_s"] for r in row["rounds"])
    ordered = [row["trainer"]["user_ordered_batches"] for row in rows]
    assert ordered == [False, False, False, True, True]


def test_each_peer_round_reports_the_peers_run(monkeypatch):
    """`--peer` runs harness.measure.peer at our batch size and XLA setting, with the quiet wait and --peer-env."""
    from harness.measure import throughput
    from harness.measure.peer import PeerThroughput

    calls = []

    def run_peer_throughput(batch, xla, wait_quiet_s=0, env=None):
        calls.append((batch, xla, wait_quiet_s, env))
        return PeerThroughput(examples_per_s=150000.0, best_interval=160000.0, foreign_cores=0.02, batch=batch,
                              xla=xla, logged_steps=30, log=Path("/x.log"))

    monkeypatch.setattr(throughput, "run_peer_throughput", run_peer_throughput)
    out = throughput.run_peer(98304, True, 7, {"TF_CPU_ALLOCATOR_USE_BFC": "7"})
    assert calls == [(98304, True, 7, {"TF_CPU_ALLOCATOR_USE_BFC": "7"})]
    assert out == {"environment": {"TF_CPU_ALLOCATOR_USE_BFC": "7"}, "examples_per_s": 150000.0,
                   "best_interval": 160000.0, "foreign_cores": 0.02, "batch": 98304, "xla": True, "logged_steps": 30,
                   "log": "/x.log"}
    assert throughput.run_peer(98304, False, 0)["environment"] == {}
