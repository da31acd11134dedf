"""Position helpers: select the last position of a sequence."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_seqrec")
class LastPosition(keras.layers.Layer):
    """`(batch, length, dim) -> (batch, dim)`: the state at the last (most recent) position.

    Inputs are left-padded, so the last position is always the most recent real item.

    Example:

    >>> ops.convert_to_numpy(LastPosition()(ops.reshape(ops.arange(6.0), (1, 3, 2)))).tolist()
    [[4.0, 5.0]]
    """

    def call(self, inputs, mask=None):
        return inputs[:, -1, :]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_spec(self, inputs, mask=None):
        return keras.KerasTensor((inputs.shape[0], inputs.shape[-1]), dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="keras_seqrec")
class PaddingMask(keras.layers.Layer):
    """`(batch, length)` item indices -> bool mask, True at real items (index != 0).

    With `as_float=True` the mask is `(batch, length, 1)` in the compute dtype, ready to
    multiply hidden states by.

    Example:

    >>> ops.convert_to_numpy(PaddingMask()(ops.array([[0, 4, 2]]))).tolist()
    [[False, True, True]]
    """

    def __init__(self, as_float: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.as_float = bool(as_float)

    def call(self, inputs):
        real = ops.not_equal(inputs, 0)
        if self.as_float:
            return ops.expand_dims(ops.cast(real, self.compute_dtype), -1)
        return real

    def compute_output_spec(self, inputs):
        if self.as_float:
            return keras.KerasTensor(tuple(inputs.shape) + (1,), dtype=self.compute_dtype)
        return keras.KerasTensor(inputs.shape, dtype="bool")

    def get_config(self):
        config = super().get_config()
        config.update(as_float=self.as_float)
        return config


@keras.saving.register_keras_serializable(package="keras_seqrec")
class TruncateSequence(keras.layers.Layer):
    """Keep the most recent `max_len` positions of left-padded sequences.

    Zoo models take inputs of any length: a shorter batch (trimmed padding) costs less, and a
    longer history is cut to the `max_len` items the model was built for. `max_len` is kept in
    this layer's config, so `model_max_len(model)` can read it back.

    Example:

    >>> ops.convert_to_numpy(TruncateSequence(2)(ops.array([[0, 5, 6, 7]]))).tolist()
    [[6, 7]]
    """

    def __init__(self, max_len: int, **kwargs):
        super().__init__(**kwargs)
        self.max_len = int(max_len)

    def call(self, inputs):
        return inputs[:, -self.max_len:]

    def compute_output_spec(self, inputs):
        length = inputs.shape[1]
        if length is not None:
            length = min(length, self.max_len)
        return keras.KerasTensor((inputs.shape[0], length), dtype=inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(max_len=self.max_len)
        return config
