"""Non-neural baselines every model is compared against: popularity and a first-order Markov chain.

Each is a `Scorer` (see `keras_seqrec.evaluation`): built from a prepared dataset's training
sequences, it scores every item for a batch of left-padded inputs, with padding at -inf.
"""

from __future__ import annotations

import numpy as np

from keras_seqrec.data import SequenceDataset


class PopularityBaseline:
    """Scores every item by its number of interactions in the training sequences.

    Example:

    >>> import pandas as pd, keras_seqrec as ks
    >>> log = ks.datasets.from_dataframe(pd.DataFrame(
    ...     {"user": [1, 1, 1, 1], "item": [5, 5, 6, 7], "timestamp": [1, 2, 3, 4]}))
    >>> PopularityBaseline(ks.prepare(log)).score(np.zeros((1, 2), int)).tolist()
    [[-inf, 2.0, 0.0, 0.0]]
    """

    name = "pop"

    def __init__(self, data: SequenceDataset):
        counts = data.item_counts().astype(np.float32)
        counts[0] = -np.inf
        self.counts = counts

    def score(self, inputs: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(inputs), len(self.counts))).copy()


class MarkovBaseline:
    """First-order Markov chain: counts of item-to-item transitions in training sequences.

    The score of item j after a history ending in item i is `count(i -> j)`, plus the item's
    training popularity scaled into [0, 1) so that popularity orders items with equal (often
    zero) transition counts: a history whose last item was never followed falls back to `pop`.
    """

    name = "markov"

    def __init__(self, data: SequenceDataset):
        size = data.vocabulary.size
        train = data.train
        same_row = np.ones(len(train.values), dtype=bool)
        same_row[train.offsets[1:-1] - 1] = False  # no transition across users
        same_row[-1:] = False
        prev = train.values[:-1][same_row[:-1]].astype(np.int64)
        nxt = train.values[1:][same_row[:-1]].astype(np.int64)
        pairs, counts = np.unique(prev * size + nxt, return_counts=True)
        self._src = pairs // size
        self._dst = pairs % size
        self._counts = counts.astype(np.float32)
        self._indptr = np.searchsorted(self._src, np.arange(size + 1))
        pop = data.item_counts().astype(np.float32)
        self._backoff = pop / (pop.max() + 1.0)
        self._backoff[0] = -np.inf
        self.size = size

    def score(self, inputs: np.ndarray) -> np.ndarray:
        last = np.asarray(inputs)[:, -1].astype(np.int64)
        scores = np.broadcast_to(self._backoff, (len(last), self.size)).copy()
        for row, item in enumerate(last):
            lo, hi = self._indptr[item], self._indptr[item + 1]
            scores[row, self._dst[lo:hi]] += self._counts[lo:hi]
        return scores


BASELINES = {"pop": PopularityBaseline, "markov": MarkovBaseline}
