"""bf16 on CPUs (the `cpu-bf16` profile): what stays float32, every eval path against the plain one, the gate.

Why: mixed_bfloat16 on a CPU runs its matrix products as TensorFlow ops between XLA programs
(FastPaths.tf_matmuls, harness.train.fast.choice), a training step and an eval of their own, so
they are held against the plain reference path (FastPaths.reference()) on the same weights and
batches. bf16 itself is emulated on CPUs without AVX512_BF16 (these tests pass everywhere); the
split machinery is also run in float32, where it must equal the plain path to float tolerance.

Tolerances: in bf16 a product rounds to 8 significant bits, and the fast paths round at other
places than the plain path (the first layer as two halves, the products in TensorFlow's kernels
instead of XLA's), so bf16 logits agree only to about 1% of the largest |logit| (measured on the
AVX2 AMD EPYC, emulated bf16: at most 0.5%; the tests allow 3%), and one step's weight changes to
1.9% (allowed: 3.5%; the plain path in bf16 and in float32 differ by 5.8%, so a step that skipped
bf16 would fail). Ranking is compared on a trained model, whose true items stand clear of their
competitors: HR must be identical.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import harness.train.trainer as trainer_module
from harness.cli import main
from harness.core.errors import UserError
from harness.distribute import hardware
from harness.train.fast.choice import LAZY_EXACT, FastPaths, planned_settings
from harness.train.fast.fast_eval import catalogue_parts, eval_logits, model_logits_fp32
from harness.train.fast.split_mlp import xla_part
from harness.train.input_pipeline import eval_dataset, train_dataset
from harness.train.trainer import Trainer
from reference.constants import EVAL_ROW
from reference.eval_rows import duplicate_mask
from reference.model import NeuMF
from reference.optimizer import AdamConfig

USERS, ITEMS, MF, LAYERS = 120, 150, 8, (32, 16, 8)
BATCH, STEPS = 256, 12
ADAM = AdamConfig(0.01, 0.783529, 0.909003, 1.45439e-7)
BF16_LOGIT_TOLERANCE = 0.03      # of 1 + max |logit| (module docstring)
FP32_LOGIT_TOLERANCE = 1e-5
# Adam with epsilon 1 moves a weight by about lr * sqrt(1 - beta2) * gradient: the change after
# one step is the gradient, scaled, instead of lr * sign(gradient), so paths can be compared by it.
LINEAR_ADAM = AdamConfig(1.0, 0.9, 0.999, 1.0)
STRATEGY = tf.distribute.get_strategy()


def model(dtype: tf.DType = tf.bfloat16, seed: int = 3) -> NeuMF:
    return NeuMF(USERS, ITEMS, mf_dim=MF, layers=LAYERS, seed=seed, compute_dtype=dtype)


def batches(seed: int = 0, steps: int = STEPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered preferences: user u likes items of cluster u % 6, so a few steps teach structure."""
    rng = np.random.default_rng(seed)
    n = steps * BATCH - 7                     # a padded tail
    users = rng.integers(0, USERS, n).astype(np.int32)
    liked = (users % 6) * (ITEMS // 6) + rng.integers(0, ITEMS // 6, n)
    positive = rng.random(n) < 0.3
    items = np.where(positive, liked, rng.integers(0, ITEMS, n)).astype(np.int32)
    return users, items, positive.astype(np.float32)


def train(trainer: Trainer, steps: int = STEPS, seed: int = 0) -> tf.Tensor:
    data = batches(seed, steps)
    iterator = iter(train_dataset(STRATEGY, *data, steps, BATCH, 1, user_order=trainer.user_ordered_batches))
    loss = trainer.train_steps(iterator, tf.constant(steps))
    trainer.catch_up()
    return loss


def eval_rows(seed: int, users: int = USERS) -> np.ndarray:
    """[users, 1000] candidates: negatives from the clusters a user does not like, the true item
    (last) from the one it does, so a trained model ranks true items clear of their competitors
    instead of among near-ties with the other liked items."""
    rng = np.random.default_rng(seed)
    cluster = ITEMS // 6
    liked = (np.arange(users) % 6)[:, np.newaxis]
    other = (liked + rng.integers(1, 6, (users, EVAL_ROW))) % 6
    rows = (other * cluster + rng.integers(0, cluster, (users, EVAL_ROW))).astype(np.int32)
    rows[:, -1] = liked[:, 0] * cluster + rng.integers(0, cluster, users)
    return rows


@pytest.fixture(scope="module")
def trained() -> NeuMF:
    """A bf16 model trained on the cpu-bf16 path (products as TensorFlow ops) until it ranks well."""
    net = model()
    trainer = Trainer(STRATEGY, net, AdamConfig(0.01), xla=True)
    assert trainer.paths.tf_matmuls
    train(trainer, steps=100)              # HR@10 about 0.96 on eval_rows: true items clear of the rest
    return net


# -- what runs, and what stays float32 ---------------------------------------------------------------

def test_bf16_on_cpu_runs_the_products_outside_xla_and_the_plan_says_so():
    described = Trainer(STRATEGY, model(), ADAM, xla=True, paths=FastPaths.for_optimizer("adam")).describe()
    planned = planned_settings(True, 1, "cpu", "mixed_bfloat16", "adam")
    assert {key: described[key] for key in planned} == planned
    assert planned["path"] == "fused" and planned["compute_dtype"] == "bfloat16"
    assert planned["matmuls"].startswith("TensorFlow (oneDNN)") and planned["eval_output_layer"] == "float32"
    assert planned_settings(True, 1, "cpu", "fp32", "adam")["matmuls"] == "XLA"
    assert planned_settings(True, 8, "tpu", "mixed_bfloat16", "adam")["matmuls"] == "XLA"
    assert not FastPaths.reference().applied(True, 1, False, False, bf16_on_cpu=True).tf_matmuls


@pytest.mark.parametrize("paths", [FastPaths(), FastPaths.reference()], ids=["cpu-bf16", "plain"])
def test_master_weights_adam_state_and_loss_stay_float32(paths):
    trainer = Trainer(STRATEGY, model(), ADAM, xla=True, paths=paths)
    before = [v.numpy().copy() for v in trainer.variables]
    loss = train(trainer, steps=3)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    assert all(v.dtype == tf.float32 for v in [*trainer.variables, *trainer.m, *trainer.v])
    assert all(np.any(v.numpy() != b) for v, b in zip(trainer.variables, before)), "every variable trains"


# -- the split training step against the plain path ---------------------------------------------------

def one_step_changes(dtype: tf.DType, paths: FastPaths, xla: bool = True) -> list[np.ndarray]:
    """How each variable moved in one step of LINEAR_ADAM (about the gradient, scaled)."""
    trainer = Trainer(STRATEGY, model(dtype, seed=5), LINEAR_ADAM, xla=xla, paths=paths)
    before = [v.numpy().copy() for v in trainer.variables]
    train(trainer, steps=1, seed=1)
    return [v.numpy() - b for v, b in zip(trainer.variables, before)]


def assert_close_changes(got: list[np.ndarray], want: list[np.ndarray], tolerance: float) -> None:
    for g, w in zip(got, want):
        assert np.linalg.norm(g - w) <= tolerance * np.linalg.norm(w), (np.linalg.norm(g - w), np.linalg.norm(w))


def test_bf16_split_step_equals_the_plain_path():
    fast = one_step_changes(tf.bfloat16, FastPaths())
    plain = one_step_changes(tf.bfloat16, FastPaths.reference(), xla=False)
    assert_close_changes(fast, plain, tolerance=0.035)


@pytest.mark.parametrize("impl", ["auto", LAZY_EXACT])
def test_split_step_in_float32_equals_the_plain_path(monkeypatch, impl):
    """The split machinery itself (rows read and update as XLA programs, the products and the
    elementwise parts' own programs between them), in float32, where rounding is 2^-24."""
    monkeypatch.setattr(trainer_module, "tf_matmuls_apply", lambda dtype, device: True)
    trainer = Trainer(STRATEGY, model(tf.float32, seed=5), ADAM, xla=True, paths=FastPaths(optimizer_impl=impl))
    assert trainer.paths.tf_matmuls and trainer.fused
    reference = Trainer(STRATEGY, model(tf.float32, seed=5), ADAM, xla=False, paths=FastPaths.reference())
    for t in (trainer, reference):
        train(t)
    for got, want in zip(trainer.variables + trainer.m + trainer.v, reference.variables + reference.m + reference.v):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=0.01 * ADAM.learning_rate)


# -- every eval path: float32 logits, equal to the plain path's ------------------------------------------

def plain_logits(net: NeuMF, rows: np.ndarray) -> np.ndarray:
    users = np.repeat(np.arange(len(rows), dtype=np.int32), EVAL_ROW)
    return model_logits_fp32(net, tf.constant(users), tf.constant(rows.reshape(-1))).numpy()


EVAL_PATHS = {
    "fast eval under XLA": lambda net, u, i: tf.function(
        lambda u, i: eval_logits(net, u, i, catalogue_parts(net)), jit_compile=True)(u, i),
    "fast eval, products as TensorFlow ops (cpu-bf16)": lambda net, u, i: eval_logits(
        net, u, i, catalogue_parts(net), part=xla_part),
    "plain eval under XLA": lambda net, u, i: tf.function(
        lambda u, i: model_logits_fp32(net, tf.repeat(u, EVAL_ROW), tf.reshape(i, [-1])), jit_compile=True)(u, i),
}


@pytest.mark.parametrize("path", list(EVAL_PATHS))
@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float32])
def test_every_eval_path_gives_float32_logits_equal_to_the_plain_path(trained, path, dtype):
    net = trained if dtype == tf.bfloat16 else model(tf.float32, seed=9)
    rows = eval_rows(1, users=40)
    got = EVAL_PATHS[path](net, tf.range(40), tf.constant(rows))
    want = plain_logits(net, rows)
    assert got.dtype == tf.float32 and want.dtype == np.float32
    tolerance = BF16_LOGIT_TOLERANCE if dtype == tf.bfloat16 else FP32_LOGIT_TOLERANCE
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=tolerance * (1 + np.max(np.abs(want))))


def test_plain_eval_output_layer_runs_in_float32(trained):
    """The plain path once cast bf16 logits up afterwards; computed in float32 they stop tying."""
    rows = eval_rows(2, users=4)
    users = tf.constant(np.repeat(np.arange(4, dtype=np.int32), EVAL_ROW))
    wide = model_logits_fp32(trained, users, tf.constant(rows.reshape(-1))).numpy().reshape(rows.shape)
    narrow = trained(users, tf.constant(rows.reshape(-1))).numpy().reshape(rows.shape)   # the model's own output layer

    def distinct(per_row: np.ndarray) -> int:
        return sum(len(np.unique(row)) for row in per_row)

    assert distinct(wide) > 0.9 * distinct(rows) > distinct(narrow)


def test_fast_eval_hr_equals_the_plain_path(trained):
    rows = eval_rows(3)
    mask = duplicate_mask(rows)
    results = []
    for paths in (FastPaths(), FastPaths.reference()):
        trainer = Trainer(STRATEGY, trained, AdamConfig(0.001), xla=True, paths=paths)
        dataset, steps = eval_dataset(STRATEGY, rows, mask, 32, 1, 1, 0)
        results.append(trainer.evaluate(dataset, steps))
    fast, plain = results
    assert fast.weight == plain.weight == USERS
    assert fast.hits == plain.hits and fast.hit_rate > 0.5, "the model must rank, and alike"
    assert fast.ndcg == pytest.approx(plain.ndcg, rel=0.02)


# -- the hardware gate ------------------------------------------------------------------------------

def cpu_with(monkeypatch, *flags: str) -> None:
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: {"model": "Test CPU", "mhz": 0.0, "flags": {"avx2", *flags},
                                                       "sockets": 1})


REFUSAL = ("profile cpu-bf16 needs a CPU with AVX512_BF16 or AMX-BF16 (this Test CPU has neither; emulated bf16 "
           "is slower than fp32): pass --allow-emulated-bf16 to run it anyway.")


def gate(allow: bool = False, system: str = "cpu-bf16") -> None:
    from harness.run.plan import PlanOverrides
    from harness.run.session import check_hardware, resolve

    profile, plan = resolve(PlanOverrides(system=system, dataset="synthetic-small", seed=0, allow_emulated_bf16=allow))
    check_hardware(profile, plan)


def test_gate_refuses_bf16_without_bf16_instructions(monkeypatch, capsys):
    cpu_with(monkeypatch)
    with pytest.raises(UserError) as refused:
        gate()
    assert str(refused.value) == REFUSAL
    assert main(["throughput", "--system", "cpu-bf16", "--dataset", "synthetic-small"]) == 2
    assert REFUSAL in capsys.readouterr().err
    gate(system="cpu")                                   # fp32 needs no bf16 instructions


@pytest.mark.parametrize("flags, allow", [((), True), (("avx512_bf16",), False), (("amx_bf16", "amx_tile"), False)])
def test_gate_passes_with_the_flag_or_bf16_instructions(monkeypatch, flags, allow):
    cpu_with(monkeypatch, *flags)
    gate(allow=allow)


def test_dry_run_shows_the_gate_without_the_flag(monkeypatch, capsys):
    cpu_with(monkeypatch)
    assert main(["run", "--system", "cpu-bf16", "--dataset", "synthetic-small", "--dry-run"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "bf16 instructions refuses: this Test CPU has neither AVX512_BF16 nor AMX-BF16" in text
    cpu_with(monkeypatch, "avx512_bf16")
    assert main(["throughput", "--system", "cpu-bf16", "--dataset", "synthetic-small", "--dry-run"]) == 0
    assert "passes: this Test CPU has AVX512_BF16" in " ".join(capsys.readouterr().out.split())
