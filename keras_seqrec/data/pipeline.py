"""`tf.data` input pipelines for training."""

from __future__ import annotations

import numpy as np


def make_training_dataset(
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    batch_size: int = 128,
    seed: int = 0,
    shuffle: bool = True,
):
    """Batches of `(inputs, targets)` from padded matrices, shuffled with `seed` every epoch.

    The last partial batch is kept: no training example is dropped.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle:
        ds = ds.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
