"""Training losses over next-item logits; every one ignores padded positions (target 0)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_seqrec")
class SoftmaxCrossEntropy(keras.losses.Loss):
    """Full softmax cross-entropy over the whole catalogue, averaged over real positions.

    `y_true` holds item indices `(batch, length)` with 0 at padded positions, `y_pred` logits
    `(batch, length, num_items + 1)`. The loss is the mean of `-log softmax(y_pred)[y_true]`
    over positions where `y_true != 0` (not over all positions, so batches with more padding
    are not down-weighted). Use it by default: it is exact, and it is what SASRec needs to beat
    its published numbers (Klenitskiy & Vasilev, RecSys 2023). Its cost grows with the
    catalogue, so for very large catalogues use a sampled loss.

    Example:

    >>> loss = SoftmaxCrossEntropy()
    >>> y_true = ops.array([[0, 1]])
    >>> y_pred = ops.array([[[-1e9, 0.0, 0.0], [-1e9, 0.0, 0.0]]])
    >>> round(float(loss(y_true, y_pred)), 4)  # log(2): the padded position is ignored
    0.6931
    """

    def __init__(self, name: str = "softmax_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.cast(y_pred, "float32")
        per_position = ops.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        real = ops.cast(ops.not_equal(y_true, 0), "float32")
        return ops.sum(per_position * real) / ops.maximum(ops.sum(real), 1.0)


LOSSES = {"softmax": SoftmaxCrossEntropy}


def get_loss(loss) -> keras.losses.Loss:
    """A loss instance from a name in `LOSSES` or a `keras.losses.Loss`."""
    if isinstance(loss, keras.losses.Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    raise ValueError(f"`loss` must be one of {sorted(LOSSES)} or a keras Loss; got {loss!r}.")
