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


def drifting_log(num_users: int = 3000, num_items: int = 2000, events: int = 40,
                 follow: float = 0.6, lifetime: float = 0.15, seed: int = 0) -> Interactions:
    """A log over time [0, 1) whose catalogue grows and whose popularity drifts, for
    update-versus-retrain benchmarks.

    Item `i` (raw id `i`) arrives at time `i / num_items`; while available, its popularity
    decays with age as `exp(-age / lifetime)`, so fresh items are the popular ones. Each item
    has three successors among the items that arrived shortly before or after it. Every user
    has `events` interactions at uniform random times; each one, with probability `follow`,
    is a successor of the user's previous item that has already arrived, else an item drawn by
    the popularity of that moment. A model trained before time t misses both the items that
    arrive after t and the popularity of later times.

    Example:

    >>> log = drifting_log(num_users=20, num_items=50, events=5)
    >>> len(log), int(log.frame["item"].max()) < 50
    (100, True)
    """
    rng = np.random.default_rng(seed)
    arrival = np.arange(num_items) / num_items
    offsets = rng.integers(-30, 31, size=(num_items, 3))
    successors = np.clip(np.arange(num_items)[:, None] + offsets, 0, num_items - 1)
    times = np.sort(rng.random((num_users, events)), axis=1)
    items = np.zeros((num_users, events), dtype=np.int64)
    grid = np.linspace(0, 1, 201)  # popularity tables on a time grid, for speed
    tables = []
    for t in grid:
        age = t - arrival
        weight = np.where(age >= 0, np.exp(-np.maximum(age, 0) / lifetime), 0.0)
        weight[0] += 1e-12  # item 0 is available from the start
        tables.append(np.cumsum(weight) / weight.sum())
    for step in range(events):
        t = times[:, step]
        slot = np.minimum(np.searchsorted(grid, t), len(grid) - 1)
        drawn = np.array([np.searchsorted(tables[s], u) for s, u in
                          zip(slot, rng.random(num_users))])
        if step:
            pick = successors[items[:, step - 1], rng.integers(0, 3, size=num_users)]
            usable = (rng.random(num_users) < follow) & (arrival[pick] <= t)
            drawn = np.where(usable, pick, drawn)
        items[:, step] = np.minimum(drawn, num_items - 1)
    frame = pd.DataFrame({
        "user": np.repeat(np.arange(num_users), events),
        "item": items.ravel(),
        "timestamp": (times.ravel() * 1e6).astype(np.int64),
    })
    return from_dataframe(frame, name="drifting")
