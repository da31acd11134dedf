"""Full-ranking evaluation: HR, NDCG, MRR and coverage @K with standard errors, and
`evaluate_recommender`. The baselines it is compared against live in `baselines.py`."""

from __future__ import annotations

import math
import warnings
import weakref
from typing import Iterable, Optional, Protocol, Sequence, Union

import keras
import numpy as np
from keras import ops

from keras_seqrec.data import EvalSplit, SequenceDataset, Sequences


class Scorer(Protocol):
    """Anything that scores every item for a batch of left-padded inputs."""

    def score(self, inputs: np.ndarray) -> np.ndarray:
        """`(batch, max_len)` item indices -> `(batch, num_items + 1)` scores."""


def finite_scores(scores: np.ndarray) -> np.ndarray:
    """`scores` with every non-finite value (NaN, +inf, -inf) replaced by -inf, so that such an
    item ranks last: a diverged model scores zero instead of a perfect hit."""
    scores = np.asarray(scores, dtype=np.float32)
    if np.isfinite(scores.sum(dtype=np.float64)):  # one pass, no mask: every score is finite
        return scores
    return np.where(np.isfinite(scores), scores, np.float32(-np.inf))


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among items 1..num_items, ties broken pessimistically.

    The padding column 0 is never a candidate. An item scoring the same as the target is
    ranked above it, so a constant model gets the worst rank, not a lucky one. Non-finite
    scores count as -inf (`finite_scores`): a NaN target ranks last.

    Example:

    >>> scores = np.array([[9.0, 0.1, 0.5, 0.5], [9.0, 3.0, 1.0, 2.0]])
    >>> target_ranks(scores, np.array([2, 1])).tolist()  # tie with item 3 counts against 2
    [1, 0]
    """
    return _ranks_among_finite(finite_scores(scores), targets)


def _check_targets(targets: np.ndarray, columns: int) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.int64)
    if (targets < 1).any() or (targets >= columns).any():
        raise ValueError("Targets must be item indices in 1..num_items (0 is padding).")
    return targets


def _ranks_among_finite(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    # `target_ranks` for scores already passed through `finite_scores` (evaluation does that
    # once per batch, before masking seen items with -inf, which the check would flag again).
    targets = _check_targets(targets, scores.shape[1])
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    candidates = scores[:, 1:]
    return (candidates >= target_scores).sum(axis=1) - 1


RANKING_METRICS = ("hr", "ndcg", "mrr")


def per_user_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each example's contribution to `metric` ("hr@10", "ndcg@10", "mrr@10") from 0-based ranks;
    their mean is the metric.

    Example:

    >>> per_user_values(np.array([0, 1, 20]), "ndcg@10").round(4).tolist()
    [1.0, 0.6309, 0.0]
    """
    name, _, k = metric.partition("@")
    if name not in RANKING_METRICS or not k.isdigit():
        raise ValueError(f"`metric` must look like 'ndcg@10' (hr, ndcg or mrr); got {metric!r}.")
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks < int(k)
    if name == "hr":
        return hit.astype(np.float64)
    value = 1.0 / np.log2(ranks + 2.0) if name == "ndcg" else 1.0 / (ranks + 1.0)
    return np.where(hit, value, 0.0)


def ranking_metrics(ranks: np.ndarray, cutoffs: Iterable[int]) -> dict[str, float]:
    """HR@K (= Recall@K with one target), NDCG@K and MRR@K from 0-based ranks: the means of
    `per_user_values` (0.0 for no ranks).

    Example:

    >>> ranking_metrics(np.array([0, 1, 5]), cutoffs=[2])  # doctest: +NORMALIZE_WHITESPACE
    {'hr@2': 0.6666666666666666, 'ndcg@2': 0.5436432511904858, 'mrr@2': 0.5}
    """
    out = {}
    for k in cutoffs:
        for name in RANKING_METRICS:
            values = per_user_values(ranks, f"{name}@{k}")
            out[f"{name}@{k}"] = float(values.mean()) if len(values) else 0.0
    return out


def ranking_standard_errors(ranks: np.ndarray, cutoffs: Iterable[int]) -> dict[str, float]:
    """The standard error of each metric of `ranking_metrics`: the standard deviation of the
    per-example values over the square root of their number (`"hr@K_se"`, ...).

    Example:

    >>> round(ranking_standard_errors(np.array([0, 0, 5, 5]), cutoffs=[1])["hr@1_se"], 4)
    0.2887
    """
    n = len(ranks)
    out = {}
    for k in cutoffs:
        for name in RANKING_METRICS:
            values = per_user_values(ranks, f"{name}@{k}")
            out[f"{name}@{k}_se"] = (float(values.std(ddof=1) / np.sqrt(n)) if n > 1
                                     else float("nan"))
    return out


def top_k_items(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` best items per row (best first), never the padding column."""
    candidates = scores[:, 1:]
    k = min(k, candidates.shape[1])
    # The k largest sit at the end of the partition (no negated copy of the scores).
    part = np.argpartition(candidates, candidates.shape[1] - k, axis=1)[:, -k:]
    order = np.argsort(-np.take_along_axis(candidates, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1) + 1


def mask_seen(scores: np.ndarray, history: Sequences) -> np.ndarray:
    """Set the scores of every item in each row's history to -inf.

    What is masked depends on the history alone, never on the answer: a target that repeats a
    history item is masked too and so counts as a miss (`repeat_targets` in
    `evaluate_recommender` reports how often that happens).
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[history.row_ids(), history.values] = -np.inf
    return scores


def repeat_targets(split: EvalSplit) -> np.ndarray:
    """Whether each example's target already occurs in its history (repeat consumption)."""
    rows = split.history.row_ids()
    hit = split.history.values == split.targets[rows]
    return np.bincount(rows[hit], minlength=len(split)) > 0


def _sampled_ranks(scores, targets, history, num_negatives, rng):
    """Rank of the target among `num_negatives` uniformly sampled unseen non-target items."""
    num_items = scores.shape[1] - 1
    ranks = np.empty(len(targets), dtype=np.int64)
    for i, target in enumerate(targets):
        excluded = set(history[i].tolist()) | {int(target)}
        pool = num_items - len(excluded)
        if pool < num_negatives:
            raise ValueError(
                f"Only {pool} candidate negatives for an example; lower `num_negatives`."
            )
        negatives = []
        while len(negatives) < num_negatives:
            draw = rng.integers(1, num_items + 1, size=2 * num_negatives)
            negatives.extend(x for x in draw if x not in excluded)
            negatives = list(dict.fromkeys(negatives))
        negatives = np.asarray(negatives[:num_negatives])
        ranks[i] = int((scores[i, negatives] >= scores[i, target]).sum())
    return ranks


_SCORERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class KerasScorer:
    """Scores with a zoo model's last position only.

    Batches are padded to a fixed number of rows and their all-padding columns trimmed to a
    bucketed width, so the backend traces few shapes and computes little padding.
    `evaluate_recommender` ranks through `rank`, on the device: only each example's rank and
    top-K item indices reach the host, never the `(batch, num_items + 1)` scores (at a
    million items, 1 GB a batch). `rank_on_device=False` ranks the same scores with NumPy on
    the host instead (the results are equal; it exists to measure the difference).
    """

    def __init__(self, model, batch_size: int = 256, rank_on_device: bool = True):
        from keras_seqrec.models.common import last_position_model, model_max_len

        self.model = last_position_model(model)
        self.max_len = model_max_len(model)
        self.batch_size = batch_size
        self.rank_on_device = bool(rank_on_device)
        self.columns = int(self.model.output_shape[-1])
        self._rankers = {}

    def _rows(self, batch: np.ndarray) -> np.ndarray:
        """`batch` padded with all-zero rows to `batch_size` rows (one traced batch shape)."""
        short = self.batch_size - len(batch)
        if not short:
            return batch
        return np.concatenate([batch, np.zeros((short,) + batch.shape[1:], batch.dtype)])

    def score(self, inputs):
        from keras_seqrec.data.pipeline import trim_padding

        n = len(inputs)
        out = []
        for start in range(0, n, self.batch_size):
            chunk = trim_padding(inputs[start : start + self.batch_size], self.max_len)
            scores = np.asarray(self.model.predict_on_batch(self._rows(chunk)),
                                dtype=np.float32)
            out.append(scores[: len(chunk)])
        return np.concatenate(out)

    def _ranker(self, k: int, exclude_seen: bool):
        if (k, exclude_seen) not in self._rankers:
            ids = keras.Input(shape=(None,), dtype="int32", name="item_ids")
            targets = keras.Input(shape=(), dtype="int32", name="targets")
            inputs = [ids, targets]
            if exclude_seen:
                inputs.append(keras.Input(shape=(None,), dtype="int32", name="seen"))
            outputs = _DeviceRanking(k, name="ranking")(self.model(ids), *inputs[1:])
            self._rankers[k, exclude_seen] = keras.Model(inputs, outputs)
        return self._rankers[k, exclude_seen]

    def rank(self, inputs: np.ndarray, targets: np.ndarray, history: Optional[Sequences],
             k: int) -> tuple[np.ndarray, np.ndarray]:
        """`(ranks, top)`: each target's 0-based rank as `target_ranks` gives it (after
        `mask_seen` with `history`, when one is given) and the indices of the `k` best items,
        best first (none for `k=0`), both computed by the backend.

        Example:

        >>> import keras_seqrec as ks
        >>> scorer = KerasScorer(ks.build_model("gru", num_items=6, max_len=3))
        >>> ranks, top = scorer.rank(np.array([[0, 1, 2]]), np.array([3]), None, k=4)
        >>> ranks.shape, top.shape, bool(0 <= ranks[0] < 6), 0 in top
        ((1,), (1, 4), True, False)
        """
        from keras_seqrec.data.pipeline import trim_padding

        targets = _check_targets(targets, self.columns).astype(np.int32)
        ranker = self._ranker(min(k, self.columns - 1), history is not None)
        ranks, tops = [], []
        for start in range(0, len(inputs), self.batch_size):
            rows = np.arange(start, min(start + self.batch_size, len(inputs)))
            feed = [self._rows(trim_padding(inputs[rows], self.max_len)),
                    self._rows(targets[rows])]
            if history is not None:
                seen = history.take(rows)
                longest = max(int(seen.lengths.max()), 1)
                # A power-of-two width: few traced shapes; padding (0) masks nothing real.
                feed.append(self._rows(seen.pad(1 << (longest - 1).bit_length())))
            rank, top = ranker.predict_on_batch(feed)
            ranks.append(np.asarray(rank[:len(rows)], dtype=np.int64))
            tops.append(np.asarray(top[:len(rows)], dtype=np.int64))
        return np.concatenate(ranks), np.concatenate(tops)


class _DeviceRanking(keras.layers.Layer):
    """Scores -> `(0-based target ranks, top-k item indices)` by the host path's rules:
    non-finite scores count as -inf, seen items are set to -inf, padding is never a candidate
    and a tie counts against the target (`target_ranks`, `mask_seen`, `top_k_items`).
    Always float32: under a `mixed_bfloat16` policy, bf16 scores would create ties."""

    def __init__(self, k: int, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.k = int(k)

    def call(self, scores, targets, seen=None):
        scores = ops.cast(scores, "float32")
        # One reduction instead of two passes that write the whole matrix, unless a score
        # is not finite (a diverged model) or the sum overflows.
        scores = ops.cond(ops.isfinite(ops.sum(scores)), lambda: scores,
                          lambda: ops.where(ops.isfinite(scores), scores,
                                            ops.full_like(scores, -np.inf)))
        targets = ops.expand_dims(ops.cast(targets, "int32"), 1)
        seen = None if seen is None else ops.cast(seen, "int32")
        ranks = self._ranks(scores, targets, seen)
        if not self.k:
            return ranks, ops.zeros((ops.shape(scores)[0], 0), "int32")
        return ranks, self._top(scores, seen)

    @staticmethod
    def _ranks(scores, targets, seen):
        # The mask is never written into the matrix (that would copy it): count over every
        # column, then take out the padding column and each distinct seen item that the mask
        # would have sent below the target; a seen (or -inf) target ranks last.
        target = ops.take_along_axis(scores, targets, axis=1)
        above = ops.sum(ops.cast(ops.greater_equal(scores, target), "int32"), axis=1)
        above = above - ops.cast(ops.greater_equal(scores[:, 0], target[:, 0]), "int32")
        last = ops.isinf(target[:, 0])
        if seen is not None:
            seen = ops.sort(seen, axis=1)
            first = ops.concatenate([ops.ones_like(seen[:, :1], "bool"),
                                     ops.not_equal(seen[:, 1:], seen[:, :-1])], axis=1)
            counted = ops.logical_and(first, ops.greater(seen, 0))
            higher = ops.greater_equal(ops.take_along_axis(scores, seen, axis=1), target)
            above = above - ops.sum(ops.cast(ops.logical_and(counted, higher), "int32"), axis=1)
            last = ops.logical_or(last, ops.any(ops.equal(seen, targets), axis=1))
        num_items = ops.shape(scores)[1] - 1
        return ops.where(last, num_items - 1, above - 1)

    def _top(self, scores, seen):
        # The top-K lists do need the seen items out of the matrix itself.
        if seen is not None:
            rows = ops.broadcast_to(ops.expand_dims(ops.arange(ops.shape(seen)[0]), 1),
                                    ops.shape(seen))
            where = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(seen, (-1,))], axis=1)
            scores = ops.scatter_update(scores, where,
                                        ops.full((ops.shape(where)[0],), -np.inf))
        _, top = ops.top_k(scores[:, 1:], self.k)
        return top + 1


def as_scorer(model) -> Scorer:
    """Wrap a zoo Keras model (scored at its last position) or pass a `Scorer` through."""
    if hasattr(model, "score"):
        return model
    if isinstance(model, keras.Model):
        if model not in _SCORERS:
            _SCORERS[model] = KerasScorer(model)
        return _SCORERS[model]
    raise TypeError(
        "`model` must be a keras_seqrec Keras model or have a `score(inputs)` method; got "
        f"{type(model).__name__}."
    )


def evaluate_recommender(
    model,
    data: SequenceDataset,
    split: Union[str, EvalSplit] = "test",
    cutoffs: Sequence[int] = (5, 10, 20),
    *,
    exclude_seen: bool = False,
    batch_size: int = 256,
    num_negatives: Optional[int] = None,
    seed: int = 0,
    standard_errors: bool = False,
    return_ranks: bool = False,
    targets: str = "all",
    coverage: bool = True,
) -> Union[dict[str, float], tuple[dict[str, float], np.ndarray]]:
    """HR@K, NDCG@K, MRR@K and coverage@K of next-item predictions, ranked over every item.

    Each example's input is its history strictly before the target (its most recent
    `data.max_len` items); the model's scores at the last position rank all `num_items` items
    (padding is never a candidate; ties count against the target).

    Args:
        model: a zoo Keras model, or a `Scorer` such as `PopularityBaseline(data)`.
        data: the prepared dataset.
        split: "validation", "test", or an `EvalSplit`.
        cutoffs: the K of each metric@K (e.g. `(10,)` gives hr@10, ndcg@10, mrr@10).
        exclude_seen: remove items already in the user's history from the ranking. The mask
            depends on the history only: a target that repeats a history item is removed too
            and counts as a miss (the share of such examples is `repeat_targets`).
        batch_size: examples scored at once.
        num_negatives: rank against this many sampled negatives instead of the full catalogue.
            Sampled metrics overstate quality and disagree with full ranking (Krichene & Rendle,
            KDD 2020); they exist only to compare with papers that used them.
        seed: sampling seed for `num_negatives`.
        return_ranks: also return each example's 0-based rank, `(metrics, ranks)`, for
            `paired_comparison` with another model on the same split.
        standard_errors: also return each HR/NDCG/MRR's standard error over the examples,
            as `"ndcg@10_se"` and so on (`ranking_standard_errors`): a difference between two
            models smaller than about twice it is not a result.
        targets: `"all"`, or only the examples whose target is a `"warm"` item or a
            `"cold"` one (new, see `prepare(..., cold_items=...)`); the ranking is over the
            whole catalogue either way.
        coverage: also report coverage@K, which needs every example's top-K list; the
            validation after each training epoch leaves it out, since no epoch is chosen on
            it.

    Returns:
        `{"hr@10": ..., "ndcg@10": ..., "mrr@10": ..., "coverage@10": ..., "examples": n,
        "repeat_targets": share}`. Coverage@K is the share of the catalogue that appears in at
        least one top-K list; `repeat_targets` is the share of examples whose target is already
        in their history (all misses when `exclude_seen`). Non-finite scores rank last.

    Example:

    >>> import pandas as pd, keras_seqrec as ks
    >>> log = ks.datasets.from_dataframe(pd.DataFrame(  # both users loop 1 -> 2 -> 3 -> 1
    ...     {"user": [1] * 6 + [2] * 6, "item": [1, 2, 3] * 4, "timestamp": list(range(12))}))
    >>> data = ks.prepare(log, max_len=3)
    >>> from keras_seqrec.baselines import MarkovBaseline
    >>> evaluate_recommender(MarkovBaseline(data), data, cutoffs=[1])["hr@1"]
    1.0
    """
    cutoffs = sorted({int(k) for k in cutoffs})
    if not cutoffs or cutoffs[0] < 1:
        raise ValueError(f"`cutoffs` must be positive integers; got {cutoffs}.")
    eval_split = data.split_targets(split, targets)
    n = len(eval_split)
    if n == 0:
        which = "" if targets == "all" else f" with a {targets} target"
        raise ValueError(f"The {eval_split.name} split has no examples{which} to evaluate.")
    if num_negatives is not None:
        warnings.warn(
            f"Ranking against {num_negatives} sampled negatives instead of the full catalogue: "
            "sampled metrics overstate quality and can reorder models. Report full-ranking "
            "metrics (num_negatives=None) as the main result.",
            UserWarning,
            stacklevel=2,
        )
    scorer = as_scorer(model)
    inputs = eval_split.inputs(data.max_len)
    rng = np.random.default_rng(seed)
    ranks = np.empty(n, dtype=np.int64)
    covered = {k: np.zeros(data.vocabulary.size, dtype=bool) for k in cutoffs}
    # A Keras model scores examples of similar history lengths together, so each batch is
    # trimmed to its own longest history (`KerasScorer`) and few padded positions are
    # computed. Other scorers, and sampled ranking (its random draws follow the split's
    # order), see the examples in the split's order.
    by_length = isinstance(scorer, KerasScorer) and num_negatives is None
    order = (np.argsort((inputs != 0).sum(axis=1), kind="stable") if by_length
             else np.arange(n))
    on_device = by_length and scorer.rank_on_device
    if on_device and scorer.columns != data.vocabulary.size:
        raise ValueError(
            f"The model returns {scorer.columns} scores per example; expected "
            f"{data.vocabulary.size} (num_items + 1 columns)."
        )
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        targets = eval_split.targets[rows]
        if on_device:  # ranks and top-K computed by the backend; no scores reach the host
            history = eval_split.history.take(rows) if exclude_seen else None
            ranks[rows], top = scorer.rank(inputs[rows], targets, history,
                                           cutoffs[-1] if coverage else 0)
        else:
            scores = finite_scores(scorer.score(inputs[rows]))
            if scores.shape != (len(rows), data.vocabulary.size):
                raise ValueError(
                    f"The model returned scores of shape {scores.shape}; expected "
                    f"{(len(rows), data.vocabulary.size)} (num_items + 1 columns)."
                )
            history = eval_split.history.take(rows)
            if exclude_seen:
                scores = mask_seen(scores, history)
            if num_negatives is None:
                ranks[rows] = _ranks_among_finite(scores, targets)
            else:
                ranks[rows] = _sampled_ranks(scores, targets, history, num_negatives, rng)
            top = top_k_items(scores, cutoffs[-1]) if coverage else None
        for k in cutoffs if coverage else ():
            covered[k][top[:, :k].ravel()] = True
    out = ranking_metrics(ranks, cutoffs)
    if standard_errors:
        out.update(ranking_standard_errors(ranks, cutoffs))
    for k in cutoffs if coverage else ():
        out[f"coverage@{k}"] = float(covered[k][1:].sum() / data.num_items)
    out["examples"] = n
    out["repeat_targets"] = float(repeat_targets(eval_split).mean())
    return (out, ranks) if return_ranks else out


def paired_comparison(ranks_a: np.ndarray, ranks_b: np.ndarray,
                      metric: str = "ndcg@10") -> dict[str, float]:
    """How much model A beats model B on `metric`, paired over the same evaluation examples.

    `difference` is A's metric minus B's; `se` the standard error of the mean per-example
    difference (a paired test: the users both models saw, so the variance between users cancels
    out, and the difference is far more precise than the two metrics' own errors suggest);
    `z = difference / se` and `p` its two-sided normal p-value. Ranks must come from the same
    split in the same order (`evaluate_recommender(..., return_ranks=True)`).

    Example:

    >>> out = paired_comparison(np.array([0, 0, 3, 50]), np.array([1, 0, 9, 50]), "hr@1")
    >>> out["difference"], round(out["se"], 4)
    (0.25, 0.25)
    """
    a, b = np.asarray(ranks_a), np.asarray(ranks_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"The two rank arrays must be 1-D and of one length (the same "
                         f"examples); got shapes {a.shape} and {b.shape}.")
    d = per_user_values(a, metric) - per_user_values(b, metric)
    n = len(d)
    diff = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    z = diff / se if se > 0 else (0.0 if diff == 0 else float("inf") * np.sign(diff))
    p = float(math.erfc(abs(z) / math.sqrt(2.0))) if np.isfinite(z) else 0.0
    return {"difference": diff, "se": se, "z": float(z), "p": p, "examples": n}


def paired_cell(ranks_a: np.ndarray, ranks_b: np.ndarray, metric: str = "ndcg@10") -> str:
    """`paired_comparison` as a table cell: `"+d ± se"`, with `" (noise)"` when the
    difference is under two standard errors (what the benchmark tables print).

    Example:

    >>> paired_cell(np.array([0, 0, 3, 50]), np.array([1, 0, 9, 50]), "hr@1")
    '+0.2500 ± 0.2500 (noise)'
    """
    return comparison_cell(paired_comparison(ranks_a, ranks_b, metric))


def comparison_cell(comparison: dict) -> str:
    """A `paired_comparison` result as a table cell (see `paired_cell`).

    Example:

    >>> comparison_cell({"difference": 0.012, "se": 0.004})
    '+0.0120 ± 0.0040'
    """
    verdict = " (noise)" if abs(comparison["difference"]) < 2 * comparison["se"] else ""
    return f"{comparison['difference']:+.4f} ± {comparison['se']:.4f}{verdict}"
