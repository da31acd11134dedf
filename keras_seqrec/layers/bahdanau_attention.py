"""Causal Bahdanau (additive) attention over a sequence of hidden states."""

from __future__ import annotations

import keras
from keras import ops

from keras_seqrec.layers.item_embedding import MASKED_SCORE


@keras.saving.register_keras_serializable(package="keras_seqrec")
class CausalBahdanauAttention(keras.layers.Layer):
    """Additive attention where position t attends to positions s <= t that are not padding.

    `score(t, s) = v^T tanh(W_q h_t + W_k h_s)`; weights are a softmax over the allowed `s`, and
    the context at `t` is the weighted sum of `h_s`. Rows of padded queries are all zero. Memory
    grows as `batch * length^2 * units`, so keep `units` modest for long sequences.

    Args:
        units: width of the additive scoring space.

    Call arguments:
        inputs: hidden states `(batch, length, dim)`.
        padding_mask: bool `(batch, length)`, True at real items. None means no padding (or
            the Keras mask attached to `inputs`, when there is one).

    Returns:
        `(context, weights)`: `(batch, length, dim)` and `(batch, length, length)` where
        `weights[b, t, s]` is the attention of position t on position s.

    Example:

    >>> layer = CausalBahdanauAttention(units=8)
    >>> context, weights = layer(ops.ones((2, 5, 4)))
    >>> tuple(context.shape), tuple(weights.shape)
    ((2, 5, 4), (2, 5, 5))

    Reference:
        Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly Learning to Align and
        Translate", ICLR 2015.
    """

    def __init__(self, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.query_dense = keras.layers.Dense(self.units, use_bias=False, name="query")
        self.key_dense = keras.layers.Dense(self.units, use_bias=True, name="key")
        self.score_dense = keras.layers.Dense(1, use_bias=False, name="score")

    def build(self, input_shape):
        self.query_dense.build(input_shape)
        self.key_dense.build(input_shape)
        self.score_dense.build(tuple(input_shape[:-1]) + (self.units,))
        self.built = True

    def call(self, inputs, padding_mask=None, mask=None):
        if padding_mask is None:
            padding_mask = mask
        length = ops.shape(inputs)[1]
        query = self.query_dense(inputs)  # (batch, length, units)
        key = self.key_dense(inputs)  # (batch, length, units)
        # (batch, t, s, units) -> (batch, t, s)
        energy = ops.tanh(ops.expand_dims(query, 2) + ops.expand_dims(key, 1))
        scores = ops.squeeze(self.score_dense(energy), -1)
        scores = ops.cast(scores, "float32")
        positions = ops.arange(length)
        allowed = ops.expand_dims(positions, 1) >= ops.expand_dims(positions, 0)  # s <= t
        allowed = ops.expand_dims(allowed, 0)
        if padding_mask is not None:
            real = ops.cast(padding_mask, "bool")
            allowed = ops.logical_and(allowed, ops.expand_dims(real, 1))  # key is real
            allowed = ops.logical_and(allowed, ops.expand_dims(real, 2))  # query is real
        scores = ops.where(allowed, scores, ops.cast(MASKED_SCORE, "float32"))
        weights = ops.softmax(scores, axis=-1)
        weights = ops.where(allowed, weights, ops.zeros_like(weights))
        context = ops.matmul(ops.cast(weights, inputs.dtype), inputs)
        return context, weights

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_spec(self, inputs, padding_mask=None, mask=None):
        batch, length, dim = inputs.shape
        return (
            keras.KerasTensor((batch, length, dim), dtype=inputs.dtype),
            keras.KerasTensor((batch, length, length), dtype="float32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config
