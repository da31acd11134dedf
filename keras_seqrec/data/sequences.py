"""`Sequences`: a ragged batch of item-index sequences stored as one flat array plus offsets."""

from __future__ import annotations

from typing import Iterator

import numpy as np


def ranges(lengths: np.ndarray) -> np.ndarray:
    """`0, 1, ..., lengths[i] - 1` for every i, concatenated (positions inside segments).

    Example:

    >>> ranges(np.array([3, 0, 2])).tolist()
    [0, 1, 2, 0, 1]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.arange(lengths.sum(), dtype=np.int64) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )


class Sequences:
    """Ragged int32 sequences, vectorised: `values` holds them end to end, `offsets` the bounds.

    Row `i` is `values[offsets[i]:offsets[i + 1]]`, oldest item first.

    Example:

    >>> seqs = Sequences.from_lists([[1, 2, 3], [4], []])
    >>> seqs.lengths.tolist()
    [3, 1, 0]
    >>> seqs.pad(2).tolist()
    [[2, 3], [0, 4], [0, 0]]
    """

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        values = np.asarray(values, dtype=np.int32)
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(values):
            raise ValueError("`offsets` must start at 0 and end at len(values).")
        if (np.diff(offsets) < 0).any():
            raise ValueError("`offsets` must be non-decreasing.")
        self.values = values
        self.offsets = offsets

    @classmethod
    def from_lists(cls, rows) -> "Sequences":
        rows = [np.asarray(r, dtype=np.int32) for r in rows]
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        values = np.concatenate(rows) if rows else np.zeros(0, np.int32)
        return cls(values, np.concatenate([[0], np.cumsum(lengths)]))

    @classmethod
    def from_lengths(cls, values: np.ndarray, lengths: np.ndarray) -> "Sequences":
        return cls(values, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def tolist(self) -> list[list[int]]:
        return [row.tolist() for row in self]

    def positions(self) -> np.ndarray:
        """Position of each value inside its row (0 = oldest)."""
        return ranges(self.lengths)

    def row_ids(self) -> np.ndarray:
        """Row number of each value."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def slices(self, rows: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> "Sequences":
        """Row i of the result is `self[rows[i]][starts[i]:starts[i] + lengths[i]]`.

        Example:

        >>> Sequences.from_lists([[1, 2, 3], [4, 5]]).slices([1, 0], [1, 0], [1, 2]).tolist()
        [[5], [1, 2]]
        """
        rows = np.asarray(rows, dtype=np.int64)
        starts = np.broadcast_to(np.asarray(starts, dtype=np.int64), rows.shape)
        lengths = np.broadcast_to(np.asarray(lengths, dtype=np.int64), rows.shape)
        if ((starts < 0) | (lengths < 0) | (starts + lengths > self.lengths[rows])).any():
            raise ValueError("Slices must lie inside their rows.")
        index = np.repeat(self.offsets[:-1][rows] + starts, lengths) + ranges(lengths)
        return Sequences.from_lengths(self.values[index], lengths)

    def take(self, rows: np.ndarray) -> "Sequences":
        """The sub-collection of the given rows, in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        return self.slices(rows, 0, self.lengths[rows])

    def head(self, lengths: np.ndarray) -> "Sequences":
        """Keep the first `lengths[i]` items of every row (clipped to the row length)."""
        lengths = np.minimum(np.maximum(np.asarray(lengths, dtype=np.int64), 0), self.lengths)
        return self.prefixes(np.arange(len(self)), lengths)

    def prefixes(self, rows: np.ndarray, lengths: np.ndarray) -> "Sequences":
        """Row i of the result is `self[rows[i]][:lengths[i]]`, for increasing `rows`.

        The same as `slices(rows, 0, lengths)`, through one boolean per value instead of an
        int64 index per kept value: what splitting a log of hundreds of millions needs.

        Example:

        >>> Sequences.from_lists([[1, 2, 3], [4], [5, 6]]).prefixes([0, 2], [2, 1]).tolist()
        [[1, 2], [5]]
        """
        rows = np.asarray(rows, dtype=np.int64)
        lengths = np.broadcast_to(np.asarray(lengths, dtype=np.int64), rows.shape)
        if (np.diff(rows) <= 0).any():
            raise ValueError("`rows` must be increasing.")
        if ((lengths < 0) | (lengths > self.lengths[rows])).any():
            raise ValueError("Prefixes must lie inside their rows.")
        # +1 where a kept run starts and -1 where it ends; runs of increasing rows never
        # overlap, so the running sum is 1 inside a run and 0 elsewhere.
        nonempty = lengths > 0
        starts = self.offsets[:-1][rows[nonempty]]
        edges = np.zeros(len(self.values) + 1, dtype=np.int8)
        edges[starts] += 1
        edges[starts + lengths[nonempty]] -= 1
        keep = np.cumsum(edges[:-1], dtype=np.int8).view(bool)
        return Sequences.from_lengths(self.values[keep], lengths)

    def without(self, drop: np.ndarray) -> "Sequences":
        """The same rows with every value `v` where `drop[v]` is True removed (order kept).

        Example:

        >>> Sequences.from_lists([[1, 2, 3], [2, 2]]).without(np.array([0, 0, 1, 0], bool)
        ...                                                   ).tolist()
        [[1, 3], []]
        """
        keep = ~np.asarray(drop, dtype=bool)[self.values]
        lengths = np.bincount(self.row_ids()[keep], minlength=len(self))
        return Sequences.from_lengths(self.values[keep], lengths)

    def last(self) -> np.ndarray:
        """The last item of each row (rows must be non-empty)."""
        if (self.lengths == 0).any():
            raise ValueError("`last()` needs non-empty rows.")
        return self.values[self.offsets[1:] - 1]

    def pad(self, length: int) -> np.ndarray:
        """Left-padded `(rows, length)` int32 matrix holding the most recent `length` items."""
        if length < 1:
            raise ValueError(f"`length` must be >= 1; got {length}.")
        lengths = self.lengths
        out = np.zeros((len(self), length), dtype=np.int32)
        row_len = np.repeat(lengths, lengths)
        pos = self.positions()
        keep = pos >= row_len - length
        cols = (length - row_len + pos)[keep]
        out[self.row_ids()[keep], cols] = self.values[keep]
        return out

    def __repr__(self) -> str:
        return f"Sequences(rows={len(self):,}, items={len(self.values):,})"
