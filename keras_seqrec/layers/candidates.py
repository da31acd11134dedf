"""Layers that assemble candidate scores for the sampled losses (training only)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_seqrec.layers.item_embedding import MASKED_SCORE


@keras.saving.register_keras_serializable(package="keras_seqrec")
class FirstRow(keras.layers.Layer):
    """`(batch, n) -> (n,)`: negatives shared by a batch arrive repeated on every row."""

    def call(self, inputs):
        return inputs[0]

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((inputs.shape[-1],), dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="keras_seqrec")
class CandidateLogits(keras.layers.Layer):
    """Concatenate target and negative scores; mask accidental hits; optional log-Q correction.

    Call arguments:
        positive: `(batch, length, 1)` scores of the targets.
        negative: `(batch, length, n)` scores of the negatives.
        targets: `(batch, length)` target indices.
        negative_ids: `(n,)` shared or `(batch, length, n)` per-position negative indices.

    Returns:
        `(batch, length, 1 + n)`: column 0 the target. A negative equal to the target scores
        -1e9. With `log_q` (log sampling probabilities per index) every candidate's score is
        lowered by its `log q`.

    Example:

    >>> layer = CandidateLogits()
    >>> out = layer(ops.ones((1, 1, 1)), ops.zeros((1, 1, 2)), ops.array([[3]]),
    ...             ops.array([3, 4]))
    >>> ops.convert_to_numpy(out).tolist()
    [[[1.0, -1000000000.0, 0.0]]]
    """

    def __init__(self, log_q=None, **kwargs):
        super().__init__(**kwargs)
        self.log_q = None if log_q is None else np.asarray(log_q, dtype=np.float32)

    def call(self, positive, negative, targets, negative_ids):
        targets = ops.cast(targets, "int32")
        negative_ids = ops.cast(negative_ids, "int32")
        # (batch, length, 1) against (n,) or (batch, length, n): broadcasts either way.
        hits = ops.equal(ops.expand_dims(targets, -1), negative_ids)
        negative = ops.where(hits, ops.cast(MASKED_SCORE, "float32"), ops.cast(negative, "float32"))
        positive = ops.cast(positive, "float32")
        if self.log_q is not None:
            log_q = ops.convert_to_tensor(self.log_q)
            positive = positive - ops.expand_dims(ops.take(log_q, targets, axis=0), -1)
            correction = ops.take(log_q, negative_ids, axis=0)
            negative = ops.where(hits, negative, negative - correction)
        return ops.concatenate([positive, negative], axis=-1)

    def compute_output_spec(self, positive, negative, targets, negative_ids):
        return keras.KerasTensor(
            tuple(negative.shape[:-1]) + (None if negative.shape[-1] is None
                                          else negative.shape[-1] + 1,),
            dtype="float32",
        )

    def get_config(self):
        config = super().get_config()
        config.update(log_q=None if self.log_q is None else self.log_q.tolist())
        return config
