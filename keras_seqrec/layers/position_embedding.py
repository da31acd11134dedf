"""Learned absolute position embeddings, and the causal + padding attention mask."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_seqrec")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per position to `(batch, length, dim)` inputs.

    The table is read inside `call`, so it trains (a functional-graph
    `Embedding(L, d)(arange(L))` would be a frozen constant). Positions count from the start of
    the `max_len` window; with left padding the most recent item is always at `max_len - 1`.

    Example:

    >>> layer = PositionEmbedding(max_len=4)
    >>> tuple(layer(ops.zeros((2, 4, 3))).shape)
    (2, 4, 3)
    """

    def __init__(self, max_len: int, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.max_len = int(max_len)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.positions = self.add_weight(
            name="positions", shape=(self.max_len, input_shape[-1]),
            initializer=self.initializer,
        )
        self.built = True

    def call(self, inputs):
        length = ops.shape(inputs)[1]
        table = ops.cast(self.positions[self.max_len - length:], inputs.dtype)
        return inputs + ops.expand_dims(table, 0)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(max_len=self.max_len,
                      initializer=keras.initializers.serialize(self.initializer))
        return config


@keras.saving.register_keras_serializable(package="keras_seqrec")
class CausalPaddingMask(keras.layers.Layer):
    """`(batch, length)` bool padding mask -> `(batch, length, length)` attention mask.

    `mask[b, t, s]` is True when query t may attend to key s: `s <= t` and s is a real item.

    Example:

    >>> m = CausalPaddingMask()(ops.array([[False, True, True]]))
    >>> ops.convert_to_numpy(m).astype(int).tolist()
    [[[0, 0, 0], [0, 1, 0], [0, 1, 1]]]
    """

    def call(self, padding_mask):
        length = ops.shape(padding_mask)[1]
        positions = ops.arange(length)
        causal = ops.expand_dims(positions, 1) >= ops.expand_dims(positions, 0)
        keys = ops.expand_dims(ops.cast(padding_mask, "bool"), 1)
        return ops.logical_and(ops.expand_dims(causal, 0), keys)

    def compute_output_spec(self, padding_mask):
        b, length = padding_mask.shape
        return keras.KerasTensor((b, length, length), dtype="bool")
