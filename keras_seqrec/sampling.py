"""Negative sampling: `PopularitySampler` draws items with probability ~ count ** alpha."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np


class PopularitySampler:
    """Draws item indices with probability proportional to `count(item) ** alpha`.

    `alpha=0` is uniform over all items, `alpha=1` proportional to popularity (GRU4Rec uses
    0.5-0.75). With `alpha > 0` items with no training interaction are never drawn. Index 0
    (padding) is never drawn.

    Args:
        counts: interactions per item index, length `num_items + 1` (`data.item_counts()`).
        alpha: popularity exponent.
        seed: random seed.
        exclude: bool per item index: never draw these (e.g. the cold-start protocol's new
            items, which `alpha=0` would otherwise draw).

    Example:

    >>> sampler = PopularitySampler(np.array([0, 1, 0, 3]), alpha=1.0, seed=0)
    >>> sampler.probabilities.tolist()
    [0.0, 0.25, 0.0, 0.75]
    >>> set(sampler.sample(100).tolist()) <= {1, 3}
    True
    """

    def __init__(self, counts: np.ndarray, alpha: float = 1.0, seed: int = 0,
                 exclude: Optional[np.ndarray] = None):
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or len(counts) < 2:
            raise ValueError("`counts` must be a vector of num_items + 1 counts.")
        if alpha < 0:
            raise ValueError(f"`alpha` must be >= 0; got {alpha}.")
        if alpha == 0:
            weights = np.ones_like(counts)
        else:
            weights = np.power(counts, alpha, where=counts > 0, out=np.zeros_like(counts))
        weights[0] = 0.0
        if exclude is not None:
            weights[np.asarray(exclude, dtype=bool)] = 0.0
        if weights.sum() <= 0:
            raise ValueError("No item can be sampled: every count is zero.")
        self.probabilities = weights / weights.sum()
        self.alpha = float(alpha)
        self._cumulative = np.cumsum(self.probabilities)
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)

    @property
    def log_q(self) -> np.ndarray:
        """log of each item's sampling probability, floored at the smallest positive one (so
        items that are never drawn still get a finite correction when they are targets)."""
        floor = self.probabilities[self.probabilities > 0].min()
        return np.log(np.maximum(self.probabilities, floor)).astype(np.float32)

    def sample(self, shape: Union[int, tuple],
               rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """Item indices of the given shape, drawn with replacement (from `rng` when given,
        else from the sampler's own generator)."""
        u = (self._rng if rng is None else rng).random(shape)
        idx = np.searchsorted(self._cumulative, u, side="right")
        return np.minimum(idx, len(self.probabilities) - 1).astype(np.int32)
