"""`Vocabulary`: raw item ids to dense indices, with 0 reserved for padding."""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence, Union

import numpy as np

PAD = 0


class Vocabulary:
    """Maps raw item ids (ints or strings) to indices `1..num_items`; index 0 is padding.

    Indices follow the sorted order of the raw ids, so the same set of items always gets the
    same indices; `extended(new_ids)` appends items after them without moving any index (new
    items added to a trained model's catalogue).

    Args:
        ids: the distinct raw item ids, all ints or all strings.

    Example:

    >>> vocab = Vocabulary(["b", "a", "c"])
    >>> vocab.num_items, vocab.lookup(["a", "c", "zzz"]).tolist()
    (3, [1, 3, 0])
    >>> vocab.to_ids([3, 1]).tolist()
    ['c', 'a']
    """

    def __init__(self, ids: Union[Sequence, np.ndarray]):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"`ids` must be one-dimensional; got shape {ids.shape}.")
        if ids.dtype.kind in "iu":
            ids = ids.astype(np.int64)
        elif ids.dtype.kind in "UO":
            ids = ids.astype(str)
        else:
            raise TypeError(f"Item ids must be ints or strings; got dtype {ids.dtype}.")
        unique = np.unique(ids)
        if len(unique) != len(ids):
            raise ValueError("Item ids must be distinct.")
        self._set(unique)

    def _set(self, ids_in_index_order: np.ndarray) -> None:
        self._ids = ids_in_index_order  # position i holds the raw id of index i + 1
        self._order = np.argsort(ids_in_index_order, kind="stable")
        self._sorted = ids_in_index_order[self._order]

    @classmethod
    def _in_index_order(cls, ids: np.ndarray) -> "Vocabulary":
        out = cls.__new__(cls)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("Item ids must be distinct.")
        out._set(ids)
        return out

    def extended(self, new_ids: Iterable) -> "Vocabulary":
        """This vocabulary plus `new_ids` as indices `num_items + 1, ...` in the given order;
        every existing index keeps its item.

        Example:

        >>> Vocabulary([20, 10]).extended([15]).lookup([10, 20, 15]).tolist()
        [1, 2, 3]
        """
        new = np.asarray(list(new_ids))
        new = new.astype(np.int64) if self._ids.dtype.kind == "i" else new.astype(str)
        if (self.lookup(new) > 0).any():
            raise ValueError(f"Item {new[self.lookup(new) > 0][0]!r} is already in the "
                             "vocabulary.")
        return Vocabulary._in_index_order(np.concatenate([self._ids, new]))

    @property
    def num_items(self) -> int:
        """Number of real items (indices 1..num_items)."""
        return len(self._ids)

    @property
    def size(self) -> int:
        """`num_items + 1`: the width of a score vector including the padding column."""
        return len(self._ids) + 1

    @property
    def ids(self) -> np.ndarray:
        """Raw ids in index order (`ids[i]` is the raw id of index `i + 1`)."""
        return self._ids.copy()

    @property
    def id_dtype(self) -> str:
        return "int" if self._ids.dtype.kind == "i" else "str"

    def lookup(self, raw_ids: Iterable) -> np.ndarray:
        """Indices of raw ids; ids not in the vocabulary map to 0 (padding)."""
        raw = np.asarray(list(raw_ids) if not isinstance(raw_ids, np.ndarray) else raw_ids)
        if raw.size == 0:
            return np.zeros(raw.shape, dtype=np.int32)
        if self._ids.dtype.kind == "i":
            if raw.dtype.kind not in "iu":
                numeric = np.array([_as_int(x) for x in raw.ravel()], dtype=object)
                known = numeric != None  # noqa: E711 (elementwise)
                out = np.zeros(raw.size, dtype=np.int32)
                if known.any():
                    out[known] = self.lookup(numeric[known].astype(np.int64))
                return out.reshape(raw.shape)
            raw = raw.astype(np.int64)
        else:
            raw = raw.astype(str)
        pos = np.searchsorted(self._sorted, raw)
        pos_clipped = np.minimum(pos, len(self._ids) - 1)
        found = self._sorted[pos_clipped] == raw
        return np.where(found, self._order[pos_clipped] + 1, PAD).astype(np.int32)

    def to_ids(self, indices: Iterable[int]) -> np.ndarray:
        """Raw ids of indices; raises on padding or out-of-range indices."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 1 or indices.max() > self.num_items):
            raise IndexError(
                f"Indices must be in 1..{self.num_items} (0 is padding); got "
                f"min {indices.min()}, max {indices.max()}."
            )
        return self._ids[indices - 1]

    def __len__(self) -> int:
        return self.num_items

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and np.array_equal(self._ids, other._ids)

    def __repr__(self) -> str:
        return f"Vocabulary(num_items={self.num_items:,}, id_dtype={self.id_dtype!r})"

    def get_config(self) -> dict:
        return {"id_dtype": self.id_dtype, "ids": self._ids.tolist()}

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the vocabulary as JSON (`{"id_dtype": ..., "ids": [...]}`)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.get_config(), f)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Vocabulary":
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        return cls.from_config(config)

    @classmethod
    def from_config(cls, config: dict) -> "Vocabulary":
        dtype = np.int64 if config["id_dtype"] == "int" else str
        return cls._in_index_order(np.asarray(config["ids"], dtype=dtype))


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
