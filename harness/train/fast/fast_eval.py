"""Evaluation with the first MLP layer split: the item half once per catalogue item per eval,
the user half once per user, then per candidate pair only the rest of the network.

Why: an eval scores every user against 1,000 candidates (ml-20m: 138.5M pairs per epoch). The
reference path runs the whole network per pair (about 106,600 multiply-adds, docs/reference-facts.md §4);
here a pair costs the add of two precomputed halves, the ReLU tower after the first layer and
the output layer (about 41,000), which is what moves eval past "0.21 MFLOP per pair".

Ranking uses `reference.metrics.hit_and_ndcg_sums` (count the columns that beat the true item
instead of a full argsort), equal to the seed's argsort path for every non-NaN logit.

Exactness: the first layer's sum runs as (user half + item half) + bias instead of one matmul
over the concatenation, so logits differ from `NeuMF.__call__` in the last bits (the reference
path itself differs that much between eval batch sizes, as the matmul kernel blocks M
differently). HR/NDCG can change only if two of a row's logits lie within that rounding of each
other and straddle the true item's; tests/train/test_fast_eval.py shows identical HR/NDCG on random
and trained models and bounds the logit difference.

Mixed precision: the network runs in the model's compute dtype up to the last hidden layer; the
output layer always runs in float32 (float16/bfloat16 logits would create ties that count
against the true item; see reference/metrics.py), here and on the plain eval path
(`model_logits_fp32`).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from reference import constants
from reference.metrics import eval_loss_sums, hit_and_ndcg_sums
from reference.model import NeuMF
from harness.train.fast.split_mlp import Part, first_layer_halves, half_activation, inline


def catalogue_parts(model: NeuMF) -> tuple[tf.Tensor, tf.Tensor]:
    """(item GMF vectors [items, mf], item half of the first layer [items, layers[1]]) for every item."""
    _, item_kernel = first_layer_halves(model)
    table = model.embedding_item
    item_mf = tf.cast(table[:, : model.mf_dim], model.compute_dtype)
    return item_mf, half_activation(model, tf.convert_to_tensor(table), item_kernel)


def output_logit_fp32(model: NeuMF, mf_vector: tf.Tensor, mlp_vector: tf.Tensor) -> tf.Tensor:
    """The output layer in float32 whatever the compute dtype (identical to the model's for fp32)."""
    if model.compute_dtype == tf.float32:
        return model.output_logit(mf_vector, mlp_vector)
    x = tf.cast(tf.concat([mf_vector, mlp_vector], axis=1), tf.float32)
    return tf.reshape(tf.matmul(x, model.output_kernel) + model.output_bias, [-1])


class _Fp32OutputLayer:
    """The model with its output layer replaced by `output_logit_fp32`, for `NeuMF.__call__`."""

    def __init__(self, model: NeuMF) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def output_logit(self, mf_vector: tf.Tensor, mlp_vector: tf.Tensor) -> tf.Tensor:
        return output_logit_fp32(self._model, mf_vector, mlp_vector)


def model_logits_fp32(model: NeuMF, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
    """The model's own forward pass (the plain eval path) with the output layer in float32.

    The reference model casts a low-precision output layer's logits to float32 afterwards, which
    keeps the ties rounding made; eval must not rank those (reference/metrics.py). Identical to
    `model(users, items)` for a float32 model.
    """
    return NeuMF.__call__(_Fp32OutputLayer(model), users, items)


def _pair_inputs(user_half: tf.Tensor, user_mf: tf.Tensor, item_half: tf.Tensor, item_mf: tf.Tensor,
                 items: tf.Tensor, bias: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(first layer's activation [n * 1000, L1], GMF vector [n * 1000, mf]) of every candidate pair:
    the gathers and elementwise work between the per-user / per-item products and the tower."""
    preact = user_half[:, tf.newaxis, :] + tf.gather(item_half, items)        # [n, 1000, L1]
    preact = preact + bias
    mf_vector = user_mf[:, tf.newaxis, :] * tf.gather(item_mf, items)          # [n, 1000, mf]
    return (tf.nn.relu(tf.reshape(preact, [-1, preact.shape[-1]])),
            tf.reshape(mf_vector, [-1, mf_vector.shape[-1]]))


def eval_logits(model: NeuMF, users: tf.Tensor, items: tf.Tensor,
                catalogue: tuple[tf.Tensor, tf.Tensor], part: Part = inline) -> tf.Tensor:
    """float32 [n * 1000] logits for users [n] against their candidate rows items [n, 1000].

    `part` runs the per-pair gathers and elementwise work (split_mlp.Part: as an XLA program of
    its own when the products run as TensorFlow ops, bfloat16 on a CPU).
    """
    item_mf, item_half = catalogue
    dtype = model.compute_dtype
    user_kernel, _ = first_layer_halves(model)
    user_rows = tf.gather(model.embedding_user, users)
    user_half = half_activation(model, user_rows, user_kernel)                # [n, L1], once per user
    user_mf = tf.cast(user_rows[:, : model.mf_dim], dtype)
    hidden, mf_vector = part(_pair_inputs)(user_half, user_mf, item_half, item_mf, items,
                                           tf.cast(model.mlp_biases[0], dtype))
    return output_logit_fp32(model, mf_vector, model.upper_layers(hidden))


def eval_sums(model: NeuMF, users: tf.Tensor, items: tf.Tensor, dup_mask: tf.Tensor,
              catalogue: tuple[tf.Tensor, tf.Tensor], match_mlperf: bool, part: Part = inline) -> tf.Tensor:
    """float32 [5]: (hits, NDCG sum, real rows, eval-loss sum, eval-loss weights) of one batch;
    padding rows count nothing. The loss pair is `reference.metrics.eval_loss_sums` on the same
    float32 logits: an elementwise pass over what is already computed."""
    logits = eval_logits(model, users, items, catalogue, part)                 # [users * 1000] fp32
    hits, ndcg_sum, real = hit_and_ndcg_sums(
        tf.reshape(logits, [-1, constants.EVAL_ROW]), tf.reshape(dup_mask, [-1, constants.EVAL_ROW]),
        match_mlperf=match_mlperf)
    loss_sum, loss_weight = eval_loss_sums(logits, tf.reshape(dup_mask, [-1]))  # [], []
    return tf.stack([tf.cast(hits, tf.float32), ndcg_sum, tf.cast(real, tf.float32), loss_sum, loss_weight])
