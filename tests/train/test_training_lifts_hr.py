"""A short NeuMF training run on real MovieLens data (ml-latest-small in ../shared) lifts HR@10
well above the untrained model's, through the same trainer, input pipeline and eval the
benchmark uses (issue 2)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_two_epochs_on_ml_latest_small_lift_hr(shared_dir, tmp_path):
    import tensorflow as tf

    from harness.data.prepare import load_dataset
    from harness.data.sampling import epoch_examples, eval_negatives
    from harness.train.input_pipeline import eval_dataset, steps_for, train_dataset
    from harness.train.trainer import Trainer
    from reference.eval_rows import duplicate_mask, eval_items
    from reference.model import NeuMF
    from reference.optimizer import AdamConfig

    data = load_dataset("ml-latest-small", data_dir=str(shared_dir / "data"), cache_dir=str(tmp_path))
    strategy = tf.distribute.get_strategy()
    model = NeuMF(data.num_users, data.num_items, seed=0)
    trainer = Trainer(strategy, model, AdamConfig(0.0005, 0.9, 0.999, 1e-8), match_mlperf=True)
    items = eval_items(eval_negatives(data, 0), data.test_items)
    ev, ev_steps = eval_dataset(strategy, items, duplicate_mask(items), 100, 1, 1, 0)
    untrained = trainer.evaluate(ev, ev_steps)
    assert untrained.weight == data.num_users
    batch = 2048
    for epoch in (1, 2):
        users, its, labels = epoch_examples(data, 0, epoch)
        steps = steps_for(len(users), batch)
        trainer.train_steps(iter(train_dataset(strategy, users, its, labels, steps, batch, 1)), tf.constant(steps))
    trained = trainer.evaluate(ev, ev_steps)
    assert untrained.hit_rate < 0.05          # about 10 / 1,000 for a random ranking
    assert trained.hit_rate > 0.12 and trained.hit_rate > 3 * untrained.hit_rate, (untrained, trained)
    assert np.isfinite(trained.ndcg_mean) and trained.ndcg_mean > untrained.ndcg_mean
