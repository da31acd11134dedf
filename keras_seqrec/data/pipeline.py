"""Training input: next-item pairs from the training sequences, and length-bucketed batches."""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_seqrec._startup import import_tensorflow
from keras_seqrec.data.sequences import Sequences, ranges


def training_windows(train: Sequences, max_len: int) -> Sequences:
    """Training sequences cut into windows of at most `max_len + 1` items.

    A sequence longer than `max_len + 1` is cut from its end into windows that overlap by
    one item, so every training item except the first of each user is a target exactly
    once, always with up to `max_len` items of real history before it.
    """
    n = train.lengths
    # Windows per row: ceil((n - 1) / max_len) for rows with at least two items.
    count = np.where(n >= 2, -(-(n - 1) // max_len), 0)
    row = np.repeat(np.arange(len(n)), count)
    end = n[row] - ranges(count) * max_len  # window j ends j * max_len items before the end
    start = np.maximum(end - max_len - 1, 0)
    return train.slices(row, start, end - start)


def training_arrays(train: Sequences, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """`(inputs, targets)`, each `(windows, max_len)`: input `s[:-1]`, target `s[1:]`.

    Built from `training_windows` and left-padded with 0; a target of 0 marks a position
    the loss ignores (padding, or the first item of a sequence, which has no history).
    Users with fewer than two training items give no training pair.
    """
    padded = training_windows(train, max_len).pad(max_len + 1)
    inputs = padded[:, :-1]
    targets = np.where(inputs == 0, 0, padded[:, 1:])
    useful = (targets != 0).any(axis=1)
    return inputs[useful], targets[useful]


def bucket_length(length: int, max_len: int, num_buckets: int = 8) -> int:
    """Round a real sequence length up to one of few widths <= max_len.

    Above `step = max(8, ceil(max_len / num_buckets))` the widths are multiples of `step`;
    below it they are 1, 2, 3, 4, 6, 8, 12, ... (powers of two and three times powers of two),
    so short sequences, the majority in sparse logs such as Amazon Beauty (median length 3),
    are not padded to `step`. Few distinct widths mean few traces/compilations of the training
    and scoring functions (about `num_buckets + 2 log2(step)`).

    Example:

    >>> [bucket_length(n, 50) for n in (1, 3, 5, 8, 9, 47, 50)]
    [1, 3, 6, 8, 16, 48, 50]
    """
    length = max(int(length), 1)
    step = max(8, math.ceil(max_len / num_buckets))
    if length < step:
        power = 1 << (length - 1).bit_length()  # the power of two >= length
        width = 3 * power // 4 if power >= 4 and 3 * power // 4 >= length else power
        return int(min(width, step, max_len))
    return int(min(max_len, math.ceil(length / step) * step))


def trim_padding(batch: np.ndarray, max_len: int) -> np.ndarray:
    """Drop leading all-padding columns of a left-padded batch, keeping a bucketed width."""
    real = batch != 0
    if not real.any():
        return batch[:, -1:]
    longest = batch.shape[1] - int(np.argmax(real.any(axis=0)))
    width = bucket_length(longest, max_len)
    return batch[:, -width:]


class BucketedBatches(keras.utils.PyDataset):
    """Shuffled `(inputs, targets)` batches of similar lengths, with padding columns trimmed.

    Each epoch the windows are shuffled (seeded by `seed` and the epoch number), grouped into
    chunks of 50 batches, sorted by length inside each chunk and cut into batches whose order
    is shuffled again; every batch is then cut to its longest sequence rounded up to a bucket
    width. Logits are therefore computed at far fewer padded positions, and every example is
    used once per epoch (the last partial batch is kept). Backend-independent (no tf.data).

    Example:

    >>> x = np.array([[0, 0, 1], [0, 2, 3], [0, 0, 4]])
    >>> batches = BucketedBatches(x, x, batch_size=2, max_len=3)
    >>> len(batches), sum(len(b[0]) for b in (batches[0], batches[1]))
    (2, 3)
    """

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, *, batch_size: int = 128,
                 max_len: int | None = None, seed: int = 0, shuffle: bool = True,
                 chunk_batches: int = 50):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
        self.inputs = np.asarray(inputs, dtype=np.int32)
        self.targets = np.asarray(targets, dtype=np.int32)
        self.batch_size = batch_size
        self.max_len = max_len or inputs.shape[1]
        self.seed = seed
        self.shuffle = shuffle
        self.chunk = chunk_batches * batch_size
        self.lengths = (inputs != 0).sum(axis=1)
        self.epoch = 0
        self._plan()

    def _plan(self):
        n = len(self.inputs)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            self.batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n)
        batches = []
        for start in range(0, n, self.chunk):
            chunk = order[start:start + self.chunk]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + self.batch_size]
                           for i in range(0, len(chunk), self.batch_size))
        self.batches = [batches[i] for i in rng.permutation(len(batches))]

    def __len__(self):
        return math.ceil(len(self.inputs) / self.batch_size)

    @property
    def positions_per_batch(self) -> float:
        """Mean number of real target positions per batch in an epoch (for the losses)."""
        return float((self.targets != 0).sum()) / max(len(self), 1)

    def __getitem__(self, index):
        rows = self.batches[index]
        width = bucket_length(int(self.lengths[rows].max()), self.max_len)
        return self.inputs[rows, -width:], self.targets[rows, -width:]

    def start_at_epoch(self, epoch: int) -> None:
        """Plan epoch `epoch` next (0-based), as an uninterrupted run would (for resuming)."""
        self.epoch = int(epoch)
        self._plan()

    def on_epoch_end(self):
        self.epoch += 1
        self._plan()


class TargetBatches(keras.utils.PyDataset):
    """`BucketedBatches` with the targets among the inputs, for a model that computes its own
    loss (`training.full_softmax_training_model`): yields `({"item_ids", "targets"}, targets)`.
    """

    def __init__(self, batches: BucketedBatches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    @property
    def positions_per_batch(self) -> float:
        return self.batches.positions_per_batch

    def __getitem__(self, index):
        x, y = self.batches[index]
        return {"item_ids": x, "targets": y}, y

    def start_at_epoch(self, epoch: int) -> None:
        self.batches.start_at_epoch(epoch)

    def on_epoch_end(self):
        self.batches.on_epoch_end()


class SampledBatches(TargetBatches):
    """`TargetBatches` plus sampled negatives, for the sampled losses.

    Yields `({"item_ids", "targets", "negatives"}, targets)`. Shared negatives are one draw of
    `num_negatives` items per batch, repeated on every row `(batch, n)`; per-position negatives
    are `(batch, length, n)`. The draw for a batch depends only on the sampler's seed, the
    epoch and the batch's index, so a resumed run draws what an uninterrupted one would.
    """

    def __init__(self, batches: BucketedBatches, sampler, num_negatives: int,
                 shared: bool = True):
        super().__init__(batches)
        self.sampler = sampler
        self.num_negatives = int(num_negatives)
        self.shared = shared

    def __getitem__(self, index):
        inputs, y = super().__getitem__(index)
        rng = np.random.default_rng([self.sampler.seed, self.batches.epoch, index])
        if self.shared:
            negatives = np.tile(self.sampler.sample(self.num_negatives, rng), (len(y), 1))
        else:
            negatives = self.sampler.sample(y.shape + (self.num_negatives,), rng)
        inputs["negatives"] = negatives
        return inputs, y


class ShardedBatches(keras.utils.PyDataset):
    """Batches for a `keras.distribution` over several devices, and over several processes.

    The devices on the batch axis each take an equal slice of every batch, so a batch whose
    rows do not divide (the last of a length bucket, say) is padded to a multiple of
    `shards` with copies of its last row whose targets are 0 (padding): the losses leave
    them out, so the loss and gradients are those of the unpadded batch. Over several
    processes (hosts), every process builds the same batches (same data, same seed) and
    feeds its own consecutive part, `[index * n, (index + 1) * n)` of the padded rows: the
    processes together train on exactly the single-process batches.

    Example (7 rows over 4 devices of 2 processes):

    >>> x, y = np.arange(14).reshape(7, 2), np.arange(1, 8).reshape(7, 1)
    >>> [ShardedBatches([(x, y)], 4, i, 2)[0][1].ravel().tolist() for i in range(2)]
    [[1, 2, 3, 4], [5, 6, 7, 0]]
    """

    def __init__(self, batches, shards: int, process_index: int = 0, process_count: int = 1):
        super().__init__()
        if process_count < 1 or shards % process_count:
            raise ValueError(f"{shards} batch shards cannot be split over {process_count} "
                             "processes.")
        if not 0 <= process_index < process_count:
            raise ValueError(f"Process index {process_index} is outside "
                             f"0..{process_count - 1}.")
        self.batches, self.shards = batches, int(shards)
        self.index, self.count = int(process_index), int(process_count)

    def __len__(self):
        return len(self.batches)

    def __getattr__(self, name):  # positions_per_batch, start_at_epoch, epoch, ...
        if name == "batches":
            raise AttributeError(name)
        return getattr(self.batches, name)

    def _part(self, array, rows: int, is_target: bool):
        array = np.asarray(array)
        if array.ndim == 0 or array.shape[0] != rows:
            raise ValueError(f"Every training array must have the batch's {rows} rows first "
                             f"to be split over devices; got shape {array.shape}.")
        missing = -rows % self.shards
        if missing:
            filler = (np.zeros_like(array[-1:]) if is_target else array[-1:])
            array = np.concatenate([array, np.repeat(filler, missing, axis=0)])
        per = len(array) // self.count
        return array[self.index * per:(self.index + 1) * per]

    def __getitem__(self, index):
        x, y = self.batches[index]
        rows = len(y)
        if isinstance(x, dict):
            x = {k: self._part(v, rows, k == "targets") for k, v in x.items()}
        else:
            x = self._part(x, rows, False)
        return x, self._part(y, rows, True)

    def on_epoch_end(self):
        self.batches.on_epoch_end()


def as_fit_input(batches):
    """`(x, steps_per_epoch)` for `model.fit`: the batches themselves, or on the TensorFlow
    backend a repeated `tf.data` generator over them that declares variable shapes (Keras
    would otherwise fix the shapes it saw in the first batches).

    tf.data's autotuning is switched off for it: with a Python generator there is nothing to
    tune, and its background thread made destroying the iterator at the end of every `fit`
    wait 6-50 s on ML-1M SASRec (`benchmarks/SPEED.md`)."""
    if keras.backend.backend() != "tensorflow":
        return batches, None
    tf = import_tensorflow()

    def generate():
        for i in range(len(batches)):
            yield batches[i]
        batches.on_epoch_end()

    spec = tf.nest.map_structure(
        lambda a: tf.TensorSpec((None,) * np.ndim(a), tf.as_dtype(np.asarray(a).dtype)),
        batches[0],
    )
    dataset = tf.data.Dataset.from_generator(generate, output_signature=spec)
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.repeat().prefetch(2).with_options(options), len(batches)
