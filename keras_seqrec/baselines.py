"""Non-neural baselines every model is compared against: popularity, a first-order Markov chain
and, where items have features, content similarity.

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


class ContentBaseline:
    """Scores items by how much their features overlap with the history's.

    Every item is a bag of its tokens over all token fields of `features` (brand, categories,
    genres, title words; the padding and "missing" tokens left out), weighted by inverse
    document frequency over the catalogue and scaled to unit length. A history's profile is
    the sum of its items' bags, the most recent item weighing 1 and each older one
    `decay` times the next; an item's score is the profile's dot product with its bag (cosine
    similarity up to the profile's length). Uses no interaction at all, so a new item is
    scored like any other; items without any token score 0, padding -inf.

    Args:
        data: the prepared dataset (for its vocabulary and `max_len`).
        features: an `ItemFeatures` of `data.vocabulary` with at least one token field.
        decay: weight ratio between consecutive history items, in (0, 1].

    Example:

    >>> import pandas as pd, keras_seqrec as ks
    >>> from keras_seqrec.data.features import ItemFeatures
    >>> log = ks.datasets.from_dataframe(pd.DataFrame(
    ...     {"user": [1, 1, 1], "item": ["a", "b", "c"], "timestamp": [1, 2, 3]}))
    >>> data = ks.prepare(log)
    >>> features = ItemFeatures.from_frame(data.vocabulary, pd.DataFrame(
    ...     {"item": ["a", "b", "c"], "genre": ["x", "y", "x|y"]}), categorical=["genre"])
    >>> history = data.vocabulary.lookup(["a"])[None, :]
    >>> [round(float(v), 3) for v in ContentBaseline(data, features).score(history)[0]]
    [-inf, 1.0, 0.0, 0.707]
    """

    name = "content"

    def __init__(self, data: SequenceDataset, features, decay: float = 0.8):
        from scipy import sparse

        if not 0.0 < decay <= 1.0:
            raise ValueError(f"`decay` must be in (0, 1]; got {decay!r}.")
        if features.vocabulary.size != data.vocabulary.size:
            raise ValueError("`features` must be built on the dataset's vocabulary "
                             "(data.vocabulary).")
        if not features.categorical:
            raise ValueError("The content baseline needs a token field (categorical or text) "
                             "in `features`.")
        size, blocks = data.vocabulary.size, []
        for field, matrix in features.categorical.items():
            rows, cols = np.nonzero(matrix > 1)  # not padding (0) nor missing (1)
            bag = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, matrix[rows, cols])),
                                    shape=(size, features.cardinality(field)))
            bag.data[:] = 1.0  # a token repeated in one item counts once
            blocks.append(bag)
        bags = sparse.hstack(blocks).tocsr()
        document_frequency = np.asarray((bags[1:] > 0).sum(axis=0)).ravel()
        idf = np.log(size / (document_frequency + 1.0)) + 1.0  # smoothed, over size - 1 items
        bags = bags.multiply(idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(bags.multiply(bags).sum(axis=1)).ravel())
        self.bags = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ bags
        self.bags_t = self.bags.T.tocsr()
        self.decay, self.size = float(decay), size

    def score(self, inputs: np.ndarray) -> np.ndarray:
        from scipy import sparse

        inputs = np.asarray(inputs, dtype=np.int64)
        age = inputs.shape[1] - 1 - np.arange(inputs.shape[1])
        weights = np.where(inputs > 0, self.decay ** age[None, :], 0.0)
        rows = np.repeat(np.arange(len(inputs)), inputs.shape[1])
        history = sparse.csr_matrix((weights.ravel(), (rows, inputs.ravel())),
                                    shape=(len(inputs), self.size))
        scores = ((history @ self.bags) @ self.bags_t).toarray().astype(np.float32)
        scores[:, 0] = -np.inf
        return scores


BASELINES = {"pop": PopularityBaseline, "markov": MarkovBaseline}
# Baselines that need item features: `name -> cls(data, features)`.
FEATURE_BASELINES = {"content": ContentBaseline}
