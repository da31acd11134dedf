"""The prepared data: `SequenceDataset` (vocabulary, training sequences, splits) and `EvalSplit`.

`prepare` (in `prepare.py`) builds them; `pipeline.py` turns the training sequences into batches.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import numpy as np
import pandas as pd

from keras_seqrec.data.sequences import Sequences
from keras_seqrec.data.vocabulary import Vocabulary


@dataclasses.dataclass
class EvalSplit:
    """Evaluation examples: for each, the user's history strictly before the target, and the target.

    Attributes:
        name: "validation" or "test".
        users: raw user id of each example.
        history: `Sequences` with the full input history of each example (oldest first). Models
            see its most recent `max_len` items; `exclude_seen` uses all of it.
        targets: item index each example must predict.
    """

    name: str
    users: np.ndarray
    history: Sequences
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def inputs(self, max_len: int) -> np.ndarray:
        """Left-padded `(examples, max_len)` model inputs."""
        return self.history.pad(max_len)

    def through_targets(self) -> Sequences:
        """Each example's history followed by its target: on the test split, every user's
        whole sequence, what a served model reads next.

        Example:

        >>> split = EvalSplit("test", np.array([7, 8]), Sequences.from_lists([[1, 2], []]),
        ...                   np.array([3, 4]))
        >>> split.through_targets().tolist()
        [[1, 2, 3], [4]]
        """
        lengths = self.history.lengths + 1
        ends = np.cumsum(lengths) - 1  # where each target goes
        values = np.empty(int(lengths.sum()), dtype=np.int32)
        kept = np.ones(len(values), dtype=bool)
        kept[ends] = False
        values[kept], values[ends] = self.history.values, self.targets
        return Sequences.from_lengths(values, lengths)

    def with_targets(self, targets: np.ndarray) -> "EvalSplit":
        return dataclasses.replace(self, targets=np.asarray(targets, dtype=np.int32))

    def take(self, rows: np.ndarray) -> "EvalSplit":
        """The examples `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return dataclasses.replace(self, users=self.users[rows],
                                   history=self.history.take(rows), targets=self.targets[rows])


@dataclasses.dataclass
class SequenceDataset:
    """A prepared dataset: vocabulary, training sequences and the validation/test splits.

    Attributes:
        name: dataset name, for reports.
        vocabulary: raw item id <-> index (0 = padding).
        max_len: model input length; the most recent `max_len` items are kept.
        users: raw user ids aligned with `train` rows.
        train: training sequences, one per user; no validation or test target is in them.
        validation, test: `EvalSplit`s.
        items: item side data (e.g. titles) indexed by raw id, or None.
        info: counts and settings of the preparation, for reports and model cards.
        cold_items: sorted indices of the items made new by `prepare(..., cold_items=share)`:
            in the vocabulary and in evaluation histories and targets, absent from `train`
            (so from every statistic fitted on it). Empty by default.
    """

    name: str
    vocabulary: Vocabulary
    max_len: int
    users: np.ndarray
    train: Sequences
    validation: EvalSplit
    test: EvalSplit
    items: Optional[pd.DataFrame] = None
    info: dict = dataclasses.field(default_factory=dict)
    cold_items: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, dtype=np.int32))

    @property
    def num_items(self) -> int:
        return self.vocabulary.num_items

    def cold_mask(self) -> np.ndarray:
        """Bool `(vocabulary.size,)`: True at the cold (new) items' indices."""
        mask = np.zeros(self.vocabulary.size, dtype=bool)
        mask[self.cold_items] = True
        return mask

    def split_targets(self, name: Union[str, EvalSplit], targets: str = "all") -> EvalSplit:
        """The split's examples whose target is any item (`"all"`), a warm item (`"warm"`,
        seen in training) or a cold one (`"cold"`, see `cold_items`)."""
        split = self.split(name) if isinstance(name, str) else name
        if targets == "all":
            return split
        if targets not in ("warm", "cold"):
            raise ValueError(f"`targets` must be 'all', 'warm' or 'cold'; got {targets!r}.")
        cold = self.cold_mask()[split.targets]
        return split.take(np.flatnonzero(cold if targets == "cold" else ~cold))

    def split(self, name: str) -> EvalSplit:
        if name in ("validation", "valid", "val"):
            return self.validation
        if name == "test":
            return self.test
        raise ValueError(f"`split` must be 'validation' or 'test'; got {name!r}.")

    def item_counts(self) -> np.ndarray:
        """Interactions per item index in the training sequences (index 0 is always 0)."""
        return np.bincount(self.train.values, minlength=self.vocabulary.size).astype(np.int64)

    def training_windows(self) -> Sequences:
        """Training sequences cut into windows of at most `max_len + 1` items
        (see `keras_seqrec.data.pipeline.training_windows`)."""
        from keras_seqrec.data.pipeline import training_windows

        return training_windows(self.train, self.max_len)

    def training_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """`(inputs, targets)`, each `(windows, max_len)`: input `s[:-1]`, target `s[1:]`
        (see `keras_seqrec.data.pipeline.training_arrays`)."""
        from keras_seqrec.data.pipeline import training_arrays

        return training_arrays(self.train, self.max_len)

    def training_batches(self, batch_size: int = 128, seed: int = 0, shuffle: bool = True):
        """Length-bucketed `(inputs, targets)` batches for `model.fit` (see `BucketedBatches`):
        the same pairs as `training_arrays`, with padding columns trimmed per batch. This is
        the input `fit_recommender` trains on with the full softmax."""
        from keras_seqrec.data.pipeline import BucketedBatches

        inputs, targets = self.training_arrays()
        return BucketedBatches(inputs, targets, batch_size=batch_size, max_len=self.max_len,
                               seed=seed, shuffle=shuffle)

    def titles(self, indices) -> list[str]:
        """Display names of item indices: the title when the dataset has one, else the raw id."""
        raw = self.vocabulary.to_ids(indices)
        if self.items is not None and "title" in self.items.columns:
            titles = self.items["title"].reindex(raw)
            return [str(t) if isinstance(t, str) else str(r) for r, t in zip(raw, titles)]
        return [str(r) for r in raw]

    def describe(self) -> dict:
        return dict(self.info)

    def __repr__(self) -> str:
        return (
            f"SequenceDataset(name={self.name!r}, users={len(self.users):,}, "
            f"items={self.num_items:,}, train_interactions={len(self.train.values):,}, "
            f"validation={len(self.validation):,}, test={len(self.test):,}, "
            f"max_len={self.max_len})"
        )
