"""The fast eval (harness.train.fast.fast_eval) ranks exactly as the plain reference eval.

Why: HR@10 decides success, and ranking is decided by exact comparisons. The fast path adds the
user and item halves of the first layer instead of one matmul over their concatenation, so its
logits differ from `model(users, items)` in the last bits; it also ranks by counting instead of
argsort. The tests bound the logit difference and require the true item's position (hence HR and
NDCG) to be identical for every user: on a random model, on a trained model (whose logits are
structured, with close competitors), and on rows full of duplicates and repeated items (ties).
Candidates that are the same item get bit-identical logits in either path, so ties between
repeats (which match_mlperf and the lower-column rule decide) cannot differ. Measured over these
sets the logits agree to ~1e-7 relative; a flip would need two different items' logits within
that distance of each other on either side of the true item's.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from harness.train.fast.choice import FastPaths
from harness.train.fast.fast_eval import catalogue_parts, eval_logits
from harness.train.input_pipeline import eval_dataset, train_dataset
from harness.train.trainer import Trainer
from reference.constants import EVAL_ROW
from reference.eval_rows import duplicate_mask
from reference.metrics import eval_loss, true_item_positions_numpy
from reference.model import NeuMF
from reference.optimizer import AdamConfig

USERS, ITEMS = 300, 400
# Relative to the largest |logit| of the set: a trained model's logits come from sums of large
# terms, and what rounding leaves is relative to those terms (measured: ~3e-7 of max |logit|).
LOGIT_TOLERANCE = 1e-6
TRAIN_STEPS, TRAIN_BATCH = 150, 512


def eval_rows(rng: np.random.Generator, users: int = USERS, items: int = ITEMS, popular: int = 0) -> np.ndarray:
    """int32 [users, 1000], true item last; `popular` > 0 concentrates draws (many duplicates)."""
    high = popular or items
    return rng.integers(0, high, (users, EVAL_ROW)).astype(np.int32)


def both_logits(model: NeuMF, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    users = np.arange(len(rows), dtype=np.int32)
    fast = tf.function(lambda u, i: eval_logits(model, u, i, catalogue_parts(model)), jit_compile=True)
    got = fast(tf.constant(users), tf.constant(rows)).numpy()
    want = model(tf.constant(np.repeat(users, EVAL_ROW)), tf.constant(rows.reshape(-1))).numpy()
    return got, want


def assert_same_ranking(model: NeuMF, rows: np.ndarray) -> np.ndarray:
    got, want = both_logits(model, rows)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_TOLERANCE * (1 + np.max(np.abs(want))))
    mask = duplicate_mask(rows)
    for match in (True, False):
        np.testing.assert_array_equal(true_item_positions_numpy(got, mask, match),
                                      true_item_positions_numpy(want, mask, match))
    return true_item_positions_numpy(want, mask, True)


def trained_model() -> NeuMF:
    """A model trained briefly on clustered preferences, so its logits carry real structure."""
    rng = np.random.default_rng(4)
    n = TRAIN_STEPS * TRAIN_BATCH
    users = rng.integers(0, USERS, n).astype(np.int32)
    liked = (users % 8) * (ITEMS // 8) + rng.integers(0, ITEMS // 8, n)
    positive = rng.random(n) < 0.25
    items = np.where(positive, liked, rng.integers(0, ITEMS, n)).astype(np.int32)
    strategy = tf.distribute.get_strategy()
    model = NeuMF(USERS, ITEMS, seed=11)
    trainer = Trainer(strategy, model, AdamConfig(0.003), xla=True)
    dataset = train_dataset(strategy, users, items, positive.astype(np.float32), TRAIN_STEPS, TRAIN_BATCH, 1)
    trainer.train_steps(iter(dataset), tf.constant(TRAIN_STEPS))
    trainer.catch_up()
    return model


def test_random_model_ranks_identically():
    assert_same_ranking(NeuMF(USERS, ITEMS, seed=1), eval_rows(np.random.default_rng(0)))


def test_trained_model_ranks_identically(trained):
    model = trained
    rng = np.random.default_rng(5)
    rows = eval_rows(rng)
    rows[:, -1] = (np.arange(USERS) % 8) * (ITEMS // 8) + rng.integers(0, ITEMS // 8, USERS)
    positions = assert_same_ranking(model, rows)
    distinct = np.mean([len(np.unique(r)) for r in rows])
    assert np.mean(positions < 10) > 5 * 10 / distinct, "the model must have learnt something"


@pytest.fixture(scope="module")
def trained() -> NeuMF:
    return trained_model()


def test_duplicates_and_repeated_items_rank_identically(trained):
    """Rows drawn from 30 items: every row is mostly repeats, and the true item recurs often."""
    rows = eval_rows(np.random.default_rng(6), popular=30)
    assert duplicate_mask(rows)[:, :-1].mean() > 0.9
    assert_same_ranking(trained, rows)


def test_trainer_evaluate_fast_equals_reference():
    model = NeuMF(USERS, ITEMS, seed=2)
    rows = eval_rows(np.random.default_rng(7))
    rows[:, -1] = rows[:, 3]                  # some rows' true item ties with a negative's logit
    mask = duplicate_mask(rows)
    strategy = tf.distribute.get_strategy()
    results = []
    for fast in (True, False):
        paths = FastPaths() if fast else FastPaths.reference()
        trainer = Trainer(strategy, model, AdamConfig(0.001), xla=fast, paths=paths)
        assert trainer.describe()["fast_eval"] is fast
        dataset, steps = eval_dataset(strategy, rows[:250], mask[:250], 64, 1, 1, 0)   # padded tail
        results.append(trainer.evaluate(dataset, steps))
    fast, reference = results
    assert fast.weight == reference.weight == 250
    assert fast.hits == reference.hits
    assert fast.ndcg == pytest.approx(reference.ndcg, rel=1e-6)
    # The eval loss pooled over padded batches is the reference's loss over the 250 real rows at once.
    want = eval_loss(model(tf.constant(np.repeat(np.arange(250, dtype=np.int32), EVAL_ROW)),
                           tf.constant(rows[:250].reshape(-1))), mask[:250].reshape(-1)).numpy()
    assert fast.loss_weight == reference.loss_weight == 250 * EVAL_ROW
    assert reference.eval_loss == pytest.approx(float(want), rel=1e-5)
    assert fast.eval_loss == pytest.approx(float(want), rel=1e-5)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_low_precision_models_give_float32_eval_logits(dtype):
    model = NeuMF(USERS, ITEMS, seed=3, compute_dtype=dtype)
    rows = eval_rows(np.random.default_rng(8), users=4)
    got = eval_logits(model, tf.range(4), tf.constant(rows), catalogue_parts(model))
    assert got.dtype == tf.float32 and bool(tf.reduce_all(tf.math.is_finite(got)))
    # Distinct items get distinct logits far more often than in the compute dtype itself.
    assert len(np.unique(got.numpy())) > 0.9 * len(np.unique(rows))
