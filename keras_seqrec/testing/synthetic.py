"""Small synthetic logs whose next item is known, for learning tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from keras_seqrec.datasets import Interactions, from_dataframe


def deterministic_log(num_users: int = 300, num_items: int = 20, length: int = 12,
                      seed: int = 0) -> Interactions:
    """Users walk the permutation `next(i) = (7 * i + 3) mod num_items` from a random start.

    The next item is a deterministic function of the previous one, so a model that learns the
    transition reaches HR@1 = 1. Item ids are 0..num_items-1 (raw), indices 1..num_items.

    Example:

    >>> log = deterministic_log(num_users=2, num_items=5, length=3)
    >>> len(log), log.num_users
    (6, 2)
    """
    if np.gcd(7, num_items) != 1:
        raise ValueError("`num_items` must be coprime with 7 so the walk is a permutation.")
    rng = np.random.default_rng(seed)
    items = np.empty((num_users, length), dtype=np.int64)
    items[:, 0] = rng.integers(0, num_items, size=num_users)
    for t in range(1, length):
        items[:, t] = (7 * items[:, t - 1] + 3) % num_items
    frame = pd.DataFrame({
        "user": np.repeat(np.arange(num_users), length),
        "item": items.ravel(),
        "timestamp": np.tile(np.arange(length), num_users),
    })
    return from_dataframe(frame, name="deterministic")


def synthetic_item_features(num_items: int, num_categories: int = 4, seed: int = 0):
    """`ItemFeatures` for items with raw ids `0..num_items-1` (indices 1..num_items): a
    `category` token field (raw id mod `num_categories`; raw id 1 has none, so it gets
    the missing token), a `words` field of one or two tokens and a `vector` dense field of width 3
    (the last item has none). Every kind of field and of missing value, for model tests.

    Example:

    >>> features = synthetic_item_features(6)
    >>> features.item_tokens("category", 3), features.has_dense["vector"].tolist()
    (['c2'], [False, True, True, True, True, True, False])
    """
    from keras_seqrec.data.features import ItemFeatures
    from keras_seqrec.data.vocabulary import Vocabulary

    rng = np.random.default_rng(seed)
    ids = np.arange(num_items)
    frame = pd.DataFrame({
        "item": ids,
        "category": [None if i == 1 else f"c{i % num_categories}" for i in ids],
        "words": [" ".join(f"w{j}" for j in rng.choice(6, size=1 + i % 2, replace=False))
                  for i in ids],
    })
    features = ItemFeatures.from_frame(Vocabulary(ids), frame, categorical=["category"],
                                       text=["words"])
    vectors = rng.normal(size=(num_items - 1, 3)).astype("float32")
    return features.with_dense("vector", (ids[:-1], vectors))
