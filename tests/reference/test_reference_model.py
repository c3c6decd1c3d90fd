"""NeuMF and Adam in reference/ against the seed's definitions (Keras initialiser laws, v1 Adam)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from reference.model import NeuMF, training_loss
from reference.optimizer import AdamConfig, apply_adam, bias_corrections


def test_closed_model_has_the_published_parameter_count():
    model = NeuMF(138_493, 26_744)
    assert model.num_parameters() == 31_832_577


def test_layout_matches_the_seed():
    model = NeuMF(50, 40, mf_dim=8, layers=(16, 12, 6), seed=3)
    assert model.embedding_user.shape == (50, 8 + 8)
    assert [k.shape for k in model.mlp_kernels] == [(16, 12), (12, 6)]
    assert model.output_kernel.shape == (8 + 6, 1)
    # glorot_uniform bound sqrt(6 / (fan_in + fan_out)); lecun_uniform sqrt(3 / fan_in)
    assert np.abs(model.embedding_user.numpy()).max() <= np.sqrt(6 / (50 + 16))
    assert np.abs(model.output_kernel.numpy()).max() <= np.sqrt(3 / 14)
    assert not np.any(model.mlp_biases[0].numpy())


def test_forward_equals_a_hand_written_numpy_forward():
    model = NeuMF(30, 20, mf_dim=4, layers=(8, 6, 4), seed=1)
    users = np.array([0, 5, 29, 7], np.int32)
    items = np.array([3, 19, 0, 3], np.int32)
    eu, ei = model.embedding_user.numpy()[users], model.embedding_item.numpy()[items]
    mf = eu[:, :4] * ei[:, :4]
    x = np.concatenate([eu[:, 4:], ei[:, 4:]], 1)
    for k, b in zip(model.mlp_kernels, model.mlp_biases):
        x = np.maximum(x @ k.numpy() + b.numpy(), 0)
    expected = (np.concatenate([mf, x], 1) @ model.output_kernel.numpy()).ravel() + model.output_bias.numpy()
    np.testing.assert_allclose(model(users, items).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_same_seed_same_weights_and_different_seed_differs():
    a, b, c = (NeuMF(10, 10, mf_dim=4, layers=(4, 2), seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.embedding_item.numpy(), b.embedding_item.numpy())
    assert not np.array_equal(a.embedding_item.numpy(), c.embedding_item.numpy())


def test_training_loss_ignores_padding():
    logits = tf.constant([2.0, -1.0, 5.0])
    labels = tf.constant([1.0, 0.0, 0.0])
    full = training_loss(logits[:2], labels[:2], tf.ones(2))
    padded = training_loss(logits, labels, tf.constant([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(full.numpy(), padded.numpy(), rtol=1e-6)


def test_adam_matches_the_v1_optimizer_the_seed_uses():
    config = AdamConfig(0.01, 0.78, 0.9, 1e-7)
    rng = np.random.default_rng(0)
    init = rng.normal(size=(5, 3)).astype(np.float32)
    ours, theirs = tf.Variable(init), tf.Variable(init)
    m, v = tf.Variable(tf.zeros_like(init)), tf.Variable(tf.zeros_like(init))
    v1 = tf.compat.v1.train.AdamOptimizer(0.01, beta1=0.78, beta2=0.9, epsilon=1e-7)
    for step in range(1, 6):
        grad = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
        b1, b2 = bias_corrections(config, tf.constant(step))
        apply_adam(ours, m, v, grad, config, b1, b2)
        v1.apply_gradients([(grad, theirs)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)
