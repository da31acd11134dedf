"""item2vec: gensim Word2Vec (skip-gram) item vectors aligned to a `Vocabulary`."""

from __future__ import annotations

import zlib
from typing import Union

import numpy as np

from keras_seqrec.data import SequenceDataset, Sequences


def _stable_hash(text: str) -> int:
    # gensim seeds each word's starting vector with hash(word + seed); Python's str hash changes
    # between processes, so use a stable one for reproducible vectors.
    return zlib.crc32(text.encode("utf-8"))


def train_item2vec(
    data: Union[SequenceDataset, Sequences],
    num_items: int | None = None,
    *,
    embedding_dim: int = 64,
    window: int = 5,
    negative: int = 5,
    epochs: int = 10,
    min_count: int = 1,
    seed: int = 0,
    workers: int = 1,
):
    """Train skip-gram Word2Vec on training sequences; return a `(num_items + 1, dim)` matrix.

    Only `data.train` is used (a `SequenceDataset`'s training sequences exclude every validation
    and test target), so the vectors never see evaluation targets. Row `i` is the vector of item
    index `i`, whose gensim token is `str(i)`. Row 0 (padding) is zero. Items Word2Vec never saw
    (only in evaluation targets, or rarer than `min_count`) get a random normal row, seeded, with
    the per-dimension standard deviation of the trained vectors.

    Args:
        data: a `SequenceDataset` (uses `data.train`) or `Sequences` of item indices.
        num_items: catalogue size; taken from the dataset when it is one.
        embedding_dim, window, negative, epochs, min_count: gensim Word2Vec settings.
        seed: random seed; with `workers=1` results are reproducible.
        workers: gensim threads.

    Returns:
        `(matrix, model)`: the float32 matrix and the trained `gensim.models.Word2Vec`.

    Example:

    >>> from keras_seqrec import Sequences
    >>> matrix, w2v = train_item2vec(Sequences.from_lists([[1, 2, 3]] * 20), num_items=4,
    ...                              embedding_dim=8)
    >>> matrix.shape, bool((matrix[0] == 0).all())
    ((5, 8), True)

    Reference:
        Barkan & Koenigstein, "Item2Vec: Neural Item Embedding for Collaborative Filtering",
        2016; Mikolov et al., 2013.
    """
    from gensim.models import Word2Vec

    if isinstance(data, SequenceDataset):
        sequences = data.train
        num_items = data.num_items
    else:
        sequences = data
        if num_items is None:
            raise ValueError("Pass `num_items` when training on bare `Sequences`.")
    sentences = [[str(i) for i in row] for row in sequences.tolist() if len(row)]
    if not sentences:
        raise ValueError("No training sequences to learn item vectors from.")
    model = Word2Vec(
        sentences=sentences,
        vector_size=embedding_dim,
        window=window,
        negative=negative,
        sg=1,
        min_count=min_count,
        epochs=epochs,
        seed=seed,
        workers=workers,
        hashfxn=_stable_hash,
    )
    matrix = np.zeros((num_items + 1, embedding_dim), dtype=np.float32)
    seen = np.array([int(token) for token in model.wv.index_to_key], dtype=np.int64)
    matrix[seen] = model.wv.vectors
    unseen = np.setdiff1d(np.arange(1, num_items + 1), seen)
    if len(unseen):
        scale = model.wv.vectors.std(axis=0, keepdims=True)
        rng = np.random.default_rng(seed)
        matrix[unseen] = rng.normal(size=(len(unseen), embedding_dim)) * scale
    return matrix, model
