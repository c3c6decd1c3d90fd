"""NeuMF exactly as the seed's `construct_model` (TF Model Garden), as a plain `tf.Module`.

Why `tf.Module` and not Keras: TensorFlow 2.21's `tf.keras` is Keras 3, whose TF backend
handles custom training loops under `MultiWorkerMirroredStrategy` and `TPUStrategy` only
partially, and `tf_keras` (Keras 2) is in maintenance mode. `tf.Variable`s inside a `tf.Module`
are the primitive every `tf.distribute` strategy is built on: created under `strategy.scope()`
they become mirrored/TPU variables with no framework in between. Plain variables also give the
harness direct access to the tables for the exact fast paths (lazy Adam, split first layer).

Layout (seed): one embedding table per side of width `mf_dim + layers[0] // 2`, sliced into the
GMF part `[:mf_dim]` and the MLP part `[mf_dim:]`; GMF = user_mf * item_mf; MLP = concat(user_mlp,
item_mlp) then Dense+ReLU for `layers[1:]`; logit = Dense(1, lecun_uniform)(concat(GMF, MLP)).
Initialisers follow Keras: embeddings and hidden kernels glorot_uniform, biases zero, the final
kernel lecun_uniform. L2 regularisers as Keras `l2(c)`: c * sum(w**2) on the whole tables and the
hidden kernels (all 0 in the benchmark).
"""
from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

from reference import constants


def _uniform(shape: Sequence[int], limit: float, seed: tuple[int, int]) -> tf.Tensor:
    """Stateless U(-limit, limit): the same seed gives the same weights on every replica/host."""
    return tf.random.stateless_uniform(shape, seed=seed, minval=-limit, maxval=limit, dtype=tf.float32)


def glorot_uniform(shape: Sequence[int], seed: tuple[int, int]) -> tf.Tensor:
    """Keras glorot_uniform for a 2-D weight: fan_in = shape[0], fan_out = shape[1]."""
    return _uniform(shape, math.sqrt(6.0 / (shape[0] + shape[1])), seed)


def lecun_uniform(shape: Sequence[int], seed: tuple[int, int]) -> tf.Tensor:
    """Keras lecun_uniform for a 2-D weight: limit sqrt(3 / fan_in)."""
    return _uniform(shape, math.sqrt(3.0 / shape[0]), seed)


class NeuMF(tf.Module):
    """Neural matrix factorisation (GMF + MLP) producing one logit per (user, item) pair."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        mf_dim: int = constants.MF_DIM,
        layers: Sequence[int] = constants.MLP_LAYERS,
        mf_regularization: float = 0.0,
        mlp_reg_layers: Sequence[float] | None = None,
        seed: int = 0,
        compute_dtype: tf.DType = tf.float32,
        name: str = "neumf",
    ) -> None:
        super().__init__(name=name)
        layers = tuple(int(x) for x in layers)
        if layers[0] % 2 != 0:
            raise ValueError("The first layer size should be multiple of 2!")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.mf_dim, self.layers = int(mf_dim), layers
        self.mf_regularization = float(mf_regularization)
        self.mlp_reg_layers = tuple(float(x) for x in (mlp_reg_layers or (0.0,) * len(layers)))
        self.compute_dtype = compute_dtype
        width = self.mf_dim + layers[0] // 2
        seeds = iter(tf.random.experimental.stateless_split(tf.constant([seed, 0], tf.int64), 16).numpy())

        def next_seed() -> tuple[int, int]:
            s = next(seeds)
            return int(s[0]), int(s[1])

        with self.name_scope:
            self.embedding_user = tf.Variable(
                glorot_uniform((self.num_users, width), next_seed()), name="embedding_user")
            self.embedding_item = tf.Variable(
                glorot_uniform((self.num_items, width), next_seed()), name="embedding_item")
            self.mlp_kernels: list[tf.Variable] = []
            self.mlp_biases: list[tf.Variable] = []
            for i in range(1, len(layers)):
                self.mlp_kernels.append(tf.Variable(
                    glorot_uniform((layers[i - 1], layers[i]), next_seed()), name=f"mlp_kernel_{i}"))
                self.mlp_biases.append(tf.Variable(tf.zeros([layers[i]]), name=f"mlp_bias_{i}"))
            self.output_kernel = tf.Variable(
                lecun_uniform((self.mf_dim + layers[-1], 1), next_seed()), name="output_kernel")
            self.output_bias = tf.Variable(tf.zeros([1]), name="output_bias")

    @property
    def ordered_variables(self) -> list[tf.Variable]:
        """Variables in a fixed order (tables first), the order optimizer slots follow."""
        out = [self.embedding_user, self.embedding_item]
        for kernel, bias in zip(self.mlp_kernels, self.mlp_biases):
            out += [kernel, bias]
        return out + [self.output_kernel, self.output_bias]

    def mlp_tower(self, first_layer_preact: tf.Tensor) -> tf.Tensor:
        """ReLU of the first hidden layer's pre-activation, then the remaining hidden layers.

        Split out so a fast path can compute the first layer's user and item halves separately.
        """
        return self.upper_layers(tf.nn.relu(first_layer_preact))

    def upper_layers(self, first_layer_activation: tf.Tensor) -> tf.Tensor:
        """The hidden layers after the first, from the first layer's activation (after its ReLU).

        Split out so a fast path can produce that activation its own way (harness.train.fast.split_mlp).
        """
        x = first_layer_activation
        for kernel, bias in zip(self.mlp_kernels[1:], self.mlp_biases[1:]):
            x = tf.nn.relu(tf.matmul(x, tf.cast(kernel, x.dtype)) + tf.cast(bias, x.dtype))
        return x

    def output_logit(self, mf_vector: tf.Tensor, mlp_vector: tf.Tensor) -> tf.Tensor:
        """Final Dense(1) over concat(GMF, MLP); always returned in float32 (ties bias HR down)."""
        x = tf.concat([mf_vector, mlp_vector], axis=1)
        logit = tf.matmul(x, tf.cast(self.output_kernel, x.dtype)) + tf.cast(self.output_bias, x.dtype)
        return tf.cast(tf.reshape(logit, [-1]), tf.float32)

    def __call__(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """Logits [B] for user ids [B] and item ids [B]."""
        dtype = self.compute_dtype
        user = tf.cast(tf.gather(self.embedding_user, users), dtype)
        item = tf.cast(tf.gather(self.embedding_item, items), dtype)
        mf_vector = user[:, : self.mf_dim] * item[:, : self.mf_dim]
        mlp_in = tf.concat([user[:, self.mf_dim:], item[:, self.mf_dim:]], axis=1)
        kernel = tf.cast(self.mlp_kernels[0], dtype)
        preact = tf.matmul(mlp_in, kernel) + tf.cast(self.mlp_biases[0], dtype)
        return self.output_logit(mf_vector, self.mlp_tower(preact))

    def regularization_loss(self) -> tf.Tensor:
        """Keras-style L2 penalties: mf_regularization on both tables, mlp_reg_layers[i] on kernel i."""
        total = tf.constant(0.0)
        if self.mf_regularization:
            total += self.mf_regularization * (
                tf.reduce_sum(tf.square(self.embedding_user)) + tf.reduce_sum(tf.square(self.embedding_item)))
        for i, kernel in enumerate(self.mlp_kernels, start=1):
            if self.mlp_reg_layers[i]:
                total += self.mlp_reg_layers[i] * tf.reduce_sum(tf.square(kernel))
        return total

    def num_parameters(self) -> int:
        """Total trainable scalars (31,832,577 for the closed model on ml-20m)."""
        return int(sum(v.shape.num_elements() for v in self.ordered_variables))


def per_example_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Sigmoid cross-entropy on the logit: the seed's softmax over [0, logit] in closed form."""
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32), logits=logits)


def training_loss(logits: tf.Tensor, labels: tf.Tensor, valid_mask: tf.Tensor) -> tf.Tensor:
    """Mean loss over valid (non-padding) examples: TF's SUM_BY_NONZERO_WEIGHTS reduction."""
    weights = tf.cast(valid_mask, tf.float32)
    total = tf.reduce_sum(per_example_loss(logits, labels) * weights)
    return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(weights > 0, tf.float32)))
