"""Training losses over next-item scores; every one ignores padded positions (target 0).

Two families:

- `SoftmaxCrossEntropy` takes full logits `(batch, length, num_items + 1)`.
- Sampled losses (`SampledSoftmax`, `BinaryCrossEntropy`, `GBCE`, `BPRMax`, `TOP1Max`) take
  candidate scores `(batch, length, 1 + num_negatives)`: column 0 is the target's score, the
  others are sampled negatives' scores (accidental hits, negatives equal to the target, already
  set to a very negative score). `fit_recommender` builds those scores without ever computing
  logits over the whole catalogue, so memory does not grow with it.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from keras_seqrec.layers.item_embedding import MASKED_SCORE


def _valid_negatives(scores):
    """1.0 where a negative's score is a real score, 0.0 where it was masked (accidental hit)."""
    return ops.cast(ops.greater(scores[..., 1:], MASKED_SCORE / 2), "float32")


def _max_parts(y_pred):
    """What BPR-max and TOP1-max share: the target's score `(..., 1)`, the negatives' scores,
    their softmax weights (a masked negative gets weight 0), and the negatives' scores with
    masked ones set to 0 (for the score terms, where -1e9 would overflow)."""
    y_pred = ops.cast(y_pred, "float32")
    positive, negatives = y_pred[..., :1], y_pred[..., 1:]
    weights = ops.softmax(negatives, axis=-1)
    return positive, negatives, weights, negatives * _valid_negatives(y_pred)


class PositionLoss(keras.losses.Loss):
    """Base of every loss here: a per-position loss reduced over the real positions.

    By default the batch's loss is the mean over its real positions (`y_true != 0`). With
    `positions_per_batch` set, it is the sum over them divided by that constant instead:
    `fit_recommender` sets it to the mean number of real positions per batch of the epoch, so
    that every position weighs the same in an epoch however the batches were grouped by length
    (a batch of short sequences would otherwise weigh as much as one of long sequences with ten
    times more positions; on Amazon Beauty SASRec then reached validation NDCG@10 0.0609
    instead of 0.0706).

    Args:
        positions_per_batch: None for the per-batch mean, or the constant to divide by.
    """

    sampled = False

    def __init__(self, name=None, positions_per_batch: float | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.positions_per_batch = positions_per_batch

    def reduce_positions(self, per_position, y_true):
        """`per_position` losses `(batch, length)` -> a scalar over the real positions."""
        real = ops.cast(ops.not_equal(ops.cast(y_true, "int32"), 0), "float32")
        total = ops.sum(per_position * real)
        if self.positions_per_batch:
            return total / self.positions_per_batch
        return total / ops.maximum(ops.sum(real), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(positions_per_batch=self.positions_per_batch)
        return config


@keras.saving.register_keras_serializable(package="keras_seqrec")
class SoftmaxCrossEntropy(PositionLoss):
    """Full softmax cross-entropy over the whole catalogue, averaged over real positions.

    `y_true` holds item indices `(batch, length)` with 0 at padded positions, `y_pred` logits
    `(batch, length, num_items + 1)`. The loss is the mean of `-log softmax(y_pred)[y_true]`
    over positions where `y_true != 0` (not over all positions, so batches with more padding
    are not down-weighted; `fit_recommender` divides by a per-epoch constant instead, see
    `PositionLoss`). Use it by default: it is exact, and it is what SASRec needs to beat
    its published numbers (Klenitskiy & Vasilev, RecSys 2023). Its cost grows with the
    catalogue, so for very large catalogues use `SampledSoftmax`.

    Example:

    >>> loss = SoftmaxCrossEntropy()
    >>> y_true = ops.array([[0, 1]])
    >>> y_pred = ops.array([[[-1e9, 0.0, 0.0], [-1e9, 0.0, 0.0]]])
    >>> round(float(loss(y_true, y_pred)), 4)  # log(2): the padded position is ignored
    0.6931
    """

    def __init__(self, name: str = "softmax_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.cast(y_pred, "float32")
        per_position = ops.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        return self.reduce_positions(per_position, y_true)


@keras.saving.register_keras_serializable(package="keras_seqrec")
class PositionLossValues(PositionLoss):
    """Reduce per-position loss values that the model already computed, `(batch, length)`.

    What `fit_recommender` compiles a fused training model with (see
    `training.full_softmax_training_model`): `y_pred` is the loss at every position, and this
    averages it over the real ones exactly as the loss it stands for would.

    Example:

    >>> round(float(PositionLossValues()(ops.array([[0, 4]]), ops.array([[9.0, 2.0]]))), 4)
    2.0
    """

    def __init__(self, name: str = "softmax_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return self.reduce_positions(ops.cast(y_pred, "float32"), y_true)


class _SampledLoss(PositionLoss):
    """Base of the sampled losses: how `fit_recommender` should draw negatives.

    Args:
        num_negatives: negatives per step (`shared_negatives`) or per position.
        alpha: sampling exponent: negatives are drawn with probability proportional to
            `count(item) ** alpha` (0 = uniform, 1 = popularity).
    """

    sampled = True
    shared_negatives = True  # one set of negatives for the whole batch (cheap matmul)
    log_q_correction = False

    def __init__(self, num_negatives: int = 256, alpha: float = 0.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if num_negatives < 1:
            raise ValueError(f"`num_negatives` must be >= 1; got {num_negatives}.")
        self.num_negatives = int(num_negatives)
        self.alpha = float(alpha)

    def get_config(self):
        config = super().get_config()
        config.update(num_negatives=self.num_negatives, alpha=self.alpha)
        return config


@keras.saving.register_keras_serializable(package="keras_seqrec")
class SampledSoftmax(_SampledLoss):
    """Softmax cross-entropy over the target and sampled negatives, with log-Q correction.

    Negatives are shared by the whole batch and drawn with probability `q(i)` proportional to
    `count(i) ** alpha`; every candidate's score is corrected by `-log q(i)` before the softmax
    (done when the scores are built), which makes the estimate consistent with the full
    softmax. Use it when the catalogue is too large for `SoftmaxCrossEntropy`; with a few
    thousand negatives it matches full softmax quality (Klenitskiy & Vasilev, RecSys 2023).

    Example:

    >>> scores = ops.array([[[2.0, 0.0, 0.0]]])  # target scores 2, two negatives score 0
    >>> round(float(SampledSoftmax(num_negatives=2)(ops.array([[5]]), scores)), 4)
    0.2395
    """

    log_q_correction = True

    def __init__(self, num_negatives: int = 256, alpha: float = 1.0,
                 name: str = "sampled_softmax", **kwargs):
        super().__init__(num_negatives, alpha, name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        per_position = ops.logsumexp(y_pred, axis=-1) - y_pred[..., 0]
        return self.reduce_positions(per_position, y_true)


@keras.saving.register_keras_serializable(package="keras_seqrec")
class BinaryCrossEntropy(_SampledLoss):
    """Binary cross-entropy: the target is a positive, each sampled item a negative.

    `-log sigmoid(s+) - sum_j log(1 - sigmoid(s_j))` per position: the original SASRec loss
    with one uniformly drawn negative per position (`num_negatives=1`, `alpha=0`). Cheap, but
    it ranks worse than softmax losses (its scores are overconfident; see `GBCE`).

    Example:

    >>> scores = ops.array([[[0.0, 0.0]]])
    >>> round(float(BinaryCrossEntropy(num_negatives=1)(ops.array([[3]]), scores)), 4)  # 2 log 2
    1.3863
    """

    shared_negatives = False

    def __init__(self, num_negatives: int = 1, alpha: float = 0.0,
                 name: str = "binary_cross_entropy", **kwargs):
        super().__init__(num_negatives, alpha, name=name, **kwargs)

    beta = 1.0  # weight of the positive term (GBCE changes it)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        positive = -self.beta * ops.log_sigmoid(y_pred[..., 0])
        negatives = -ops.sum(ops.log_sigmoid(-y_pred[..., 1:]) * _valid_negatives(y_pred),
                             axis=-1)
        return self.reduce_positions(positive + negatives, y_true)


@keras.saving.register_keras_serializable(package="keras_seqrec")
class GBCE(BinaryCrossEntropy):
    """Generalised BCE (gSASRec): the positive term raised to the power `beta`.

    `beta = a * (t * (1 - 1/a) + 1/a)` with `a = num_negatives / (num_items - 1)` the sampling
    rate and `t` in [0, 1] the calibration: `t = 0` is plain BCE, `t = 1` fully corrects the
    overconfidence that negative sampling causes. Use it to train with few negatives and still
    rank well (Petrov & Macdonald, RecSys 2023). `fit_recommender` sets `num_items`.

    Example:

    >>> loss = GBCE(num_negatives=1, t=1.0)
    >>> loss.set_num_items(3)  # a = 1/2: beta = 0.5 * (1 * (1 - 2) + 2) = 0.5
    >>> loss.beta
    0.5
    """

    def __init__(self, num_negatives: int = 256, t: float = 0.75, alpha: float = 0.0,
                 name: str = "gbce", beta: Optional[float] = None, **kwargs):
        super().__init__(num_negatives, alpha, name=name, **kwargs)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"`t` must be in [0, 1]; got {t}.")
        self.t = float(t)
        if beta is not None:  # a saved loss whose catalogue size was already known
            self.beta = float(beta)

    def set_num_items(self, num_items: int) -> None:
        """Set `beta` from the catalogue size (before training starts)."""
        a = min(1.0, self.num_negatives / max(num_items - 1, 1))
        self.beta = a * (self.t * (1.0 - 1.0 / a) + 1.0 / a)

    def get_config(self):
        config = super().get_config()
        config.update(t=self.t)
        if "beta" in self.__dict__:  # set by `set_num_items`; else plain BCE's 1.0 applies
            config.update(beta=self.beta)
        return config


@keras.saving.register_keras_serializable(package="keras_seqrec")
class BPRMax(_SampledLoss):
    """BPR-max (GRU4Rec): BPR against negatives weighted by their softmax, plus regularisation.

    With `w_j = softmax_j(s_j)` over the negatives: `-log sum_j w_j sigmoid(s+ - s_j)
    + reg * sum_j w_j s_j^2`. The softmax focuses on the highest-scoring (hardest) negatives;
    the score regularisation is part of the loss, not optional decoration. GRU4Rec's choice
    with many (thousands) popularity-sampled negatives (Hidasi & Karatzoglou, CIKM 2018).

    Example:

    >>> scores = ops.array([[[1.0, 0.0, 0.0]]])  # w = (1/2, 1/2)
    >>> round(float(BPRMax(num_negatives=2, reg=1.0)(ops.array([[4]]), scores)), 4)
    0.3133
    """

    def __init__(self, num_negatives: int = 2048, alpha: float = 0.75, reg: float = 1.0,
                 name: str = "bpr_max", **kwargs):
        super().__init__(num_negatives, alpha, name=name, **kwargs)
        self.reg = float(reg)

    def call(self, y_true, y_pred):
        positive, negatives, weights, clean = _max_parts(y_pred)
        bpr = ops.sum(weights * ops.sigmoid(positive - negatives), axis=-1)
        reg = ops.sum(weights * ops.square(clean), axis=-1)
        return self.reduce_positions(-ops.log(bpr + 1e-24) + self.reg * reg, y_true)

    def get_config(self):
        config = super().get_config()
        config.update(reg=self.reg)
        return config


@keras.saving.register_keras_serializable(package="keras_seqrec")
class TOP1Max(_SampledLoss):
    """TOP1-max (GRU4Rec): `sum_j w_j (sigmoid(s_j - s+) + sigmoid(s_j^2))`, `w = softmax(s_j)`.

    Example:

    >>> scores = ops.array([[[0.0, 0.0, 0.0]]])  # w = (1/2, 1/2); each term 1/2 + 1/2
    >>> round(float(TOP1Max(num_negatives=2)(ops.array([[2]]), scores)), 4)
    1.0
    """

    def __init__(self, num_negatives: int = 2048, alpha: float = 0.75,
                 name: str = "top1_max", **kwargs):
        super().__init__(num_negatives, alpha, name=name, **kwargs)

    def call(self, y_true, y_pred):
        positive, negatives, weights, clean = _max_parts(y_pred)
        terms = ops.sigmoid(negatives - positive) + ops.sigmoid(ops.square(clean))
        return self.reduce_positions(ops.sum(weights * terms, axis=-1), y_true)


LOSSES = {
    "softmax": SoftmaxCrossEntropy,
    "sampled_softmax": SampledSoftmax,
    "bce": BinaryCrossEntropy,
    "gbce": GBCE,
    "bpr_max": BPRMax,
    "top1_max": TOP1Max,
}


def get_loss(loss, num_negatives: Optional[int] = None) -> keras.losses.Loss:
    """A loss instance from a name in `LOSSES` or a `keras.losses.Loss`; `num_negatives`
    replaces a sampled loss's own (a copy is made; the loss passed in is never changed).

    Example:

    >>> get_loss("bpr_max", num_negatives=64).num_negatives
    64
    """
    if isinstance(loss, str) and loss in LOSSES:
        loss = LOSSES[loss]()
    elif not isinstance(loss, keras.losses.Loss):
        raise ValueError(
            f"`loss` must be one of {sorted(LOSSES)} or a keras Loss; got {loss!r}.")
    if num_negatives is None:
        return loss
    if not getattr(loss, "sampled", False):
        raise ValueError("`num_negatives` applies to the sampled losses only.")
    return type(loss)(**{**loss.get_config(), "num_negatives": num_negatives})
