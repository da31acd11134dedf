"""New items in a trained model's catalogue, scored from their features, without retraining."""

from __future__ import annotations

import keras
import numpy as np

from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.layers import FeatureItemEmbedding

_ITEM_SIZED = ("ItemEmbedding", "FeatureItemEmbedding", "ItemScores")


def add_items(model: keras.Model, features: ItemFeatures, histories: np.ndarray = None,
              share: float = None) -> keras.Model:
    """A copy of a feature-aware `model` whose catalogue also holds the new items of
    `features` (from `old_features.with_new_items(frame)`), their vectors computed from
    their features.

    Every existing item keeps its index, weights and scores. A new item's id vector is zero
    (as a feature-aware model's untrained items start) and its output bias zero for a model
    trained with `id_dropout` (what an item whose id was dropped trained with), else the mean
    of the existing items' biases, so it is scored by its features. Export the result with
    the grown vocabulary and popularity counts padded with zeros for the new items; TF
    Serving then switches to it as the next version:

        model2 = add_items(model, features2)
        export_saved_model(model2, features2.vocabulary, item_counts=np.r_[counts, zeros])

    With `histories` (model inputs, e.g. the users' latest windows) the new items' output bias
    is then calibrated so that they draw `share` of the probability over them (default: their
    share of the catalogue, `calibrate_new_items`), as `fit_recommender` does for the
    cold-start split's new items.

    Args:
        model: a zoo model built with `item_features=` and the tied output (the default).
        features: the old features with the new items appended (`with_new_items`).
        histories: int `(n, max_len)` histories to calibrate the new items on; None keeps
            the bias described above.
        share: with `histories`, the new items' share of the probability, in (0, 1).

    Raises:
        ValueError: the model does not read item features, its output is untied (a dense
            layer has no row to fill from features), or `features` does not extend the
            model's catalogue.

    Example:

    >>> import pandas as pd, keras_seqrec as ks
    >>> from keras_seqrec.testing import synthetic_item_features
    >>> features = synthetic_item_features(10)
    >>> model = ks.build_model("gru", 10, 8, item_features=features)
    >>> grown = features.with_new_items(pd.DataFrame({"item": [99], "category": ["c1"]}))
    >>> add_items(model, grown).output_shape
    (None, None, 12)
    """
    layer = model.get_layer("item_embedding")
    if not isinstance(layer, FeatureItemEmbedding):
        raise ValueError("Only a model built with `item_features=` can score items it never "
                         "trained on; this one knows items by id only.")
    if "item_scores" in {lay.name for lay in model.layers}:
        raise ValueError("The model scores with an untied output layer, which has no "
                         "weights for new items; build it with tie_embeddings=True.")
    old, new = layer.num_items, features.vocabulary.num_items
    if new <= old:
        raise ValueError(f"`features` holds {new} items, not more than the model's {old}; "
                         "add the new items with `features.with_new_items(frame)`.")
    grown = grow_items(model, features.vocabulary.num_items, features=features)
    if histories is not None:
        calibrate_new_items(grown, histories, np.arange(old + 1, new + 1), share=share)
    return grown


def grow_items(model: keras.Model, num_items: int, features: ItemFeatures = None
               ) -> keras.Model:
    """A copy of `model` with room for `num_items` items; the first ones keep their index,
    weights and scores.

    New rows start as follows. With `features` (a feature-aware model, see `add_items`):
    id vector zero, output bias zero if the model trained with `id_dropout` else the mean
    bias, so the item is scored by its features. Without: every item-sized row (the
    embedding, the output bias, an untied output layer's column) starts at the mean of the
    trained items' rows, the vector of an average item, which training on the new
    interactions then moves (`keras_seqrec.update.update_model`). No other weight changes.

    Example:

    >>> import keras_seqrec as ks
    >>> model = ks.build_model("gru", 10, 8)
    >>> grow_items(model, 12).output_shape
    (None, None, 13)
    """
    layer = model.get_layer("item_embedding")
    old = layer.num_items
    if num_items <= old:
        raise ValueError(f"`num_items` ({num_items}) must be more than the model's {old}.")
    feature_aware = isinstance(layer, FeatureItemEmbedding)
    if feature_aware and features is None:
        raise ValueError("A feature-aware model needs the new items' `features` "
                         "(`old_features.with_new_items(frame)`).")
    config = model.get_config()
    for entry in config["layers"]:
        if entry["class_name"] in _ITEM_SIZED:
            entry["config"]["num_items"] = num_items
    grown = keras.Model.from_config(config)
    for source, target in zip(model.layers, grown.layers):
        if source.name in {"item_embedding", "item_scores"}:
            _grow_weights(source, target, old, feature_aware, getattr(layer, "id_dropout", 0.0))
        else:
            target.set_weights(source.get_weights())
    if feature_aware:
        grown.get_layer("item_embedding").set_features(features)
    return grown


def _grow_weights(source, target, old: int, feature_aware: bool, id_dropout: float) -> None:
    """Copy `source`'s weights into the larger `target`, filling the new items' rows."""
    trained = {w.path.split("/")[-1]: np.asarray(w.numpy()) for w in source.weights}
    for variable in target.weights:
        name = variable.path.split("/")[-1]
        value = trained[name]
        if value.shape == tuple(variable.shape):
            variable.assign(value)
            continue
        # An item-sized table (items on axis 0, or on the last axis of a dense kernel):
        # old rows kept, new ones filled below (or by set_features for feature tables).
        axis = 0 if value.shape[0] != variable.shape[0] else value.ndim - 1
        rows = np.zeros(tuple(variable.shape), dtype=value.dtype)
        moved = np.moveaxis(rows, axis, 0)
        trained_rows = np.moveaxis(value, axis, 0)
        moved[:old + 1] = trained_rows
        if not feature_aware:
            moved[old + 1:] = trained_rows[1:].mean(axis=0)
        elif name == "output_bias":  # what an id-dropped item trains with, else the average
            moved[old + 1:] = 0.0 if id_dropout > 0 else trained_rows[1:].mean()
        variable.assign(rows)


def new_item_share_offset(logits: np.ndarray, new_items: np.ndarray, share: float) -> float:
    """The one score offset that, added to the new items' logits, gives them `share` of the
    softmax probability on average over the rows of `logits`.

    `logits` `(histories, num_items + 1)` as the model scores them; `new_items` bool
    `(num_items + 1,)`; padding (index 0) counts on neither side. The new items' mass in a row
    is `sigmoid(lse_new + c - lse_old)`, increasing in `c`, so the mean is solved by
    bisection. An offset, not a per-row renormalisation: a history whose features call for
    new items still gives them more than one that does not.

    Example:

    >>> logits = np.array([[-1e9, 0.0, 0.0, np.log(2.0)]])  # items 1, 2 old; 3 new
    >>> abs(round(new_item_share_offset(logits, np.array([False, False, False, True]), 0.5), 4))
    0.0
    >>> round(new_item_share_offset(logits, np.array([False, False, False, True]), 0.2), 4)
    -1.3863
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"`share` is a probability share in (0, 1); got {share!r}.")
    gap = _new_item_gap(logits, new_items)
    low, high = -100.0 - gap.max(), 100.0 - gap.min()
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _mean_mass(gap, middle) < share else (low, middle)
    return float((low + high) / 2)


def new_item_mass(logits: np.ndarray, new_items: np.ndarray, offset: float = 0.0) -> float:
    """The new items' softmax probability, averaged over the rows of `logits`, once
    `offset` is added to their logits (`new_item_share_offset` solves it for a share).

    Example:

    >>> logits = np.array([[-1e9, 0.0, 0.0, np.log(2.0)]])  # items 1, 2 old; 3 new
    >>> new_item_mass(logits, np.array([False, False, False, True]))
    0.5
    """
    return float(_mean_mass(_new_item_gap(logits, new_items), offset))


def _new_item_gap(logits, new_items) -> np.ndarray:
    """Per row, log-sum-exp of the new items' logits minus the trained items' (padding on
    neither side): their softmax mass at offset c is `sigmoid(gap + c)`."""
    new_items = np.asarray(new_items, dtype=bool).copy()
    old = ~new_items
    new_items[0] = old[0] = False
    if not new_items.any() or not old.any():
        raise ValueError("The offset needs at least one new and one trained item.")
    logits = np.asarray(logits, dtype=np.float64)

    def log_sum_exp(mask):
        part = logits[:, mask]
        top = part.max(axis=1)
        return top + np.log(np.exp(part - top[:, None]).sum(axis=1))

    return log_sum_exp(new_items) - log_sum_exp(old)


def _mean_mass(gap: np.ndarray, offset: float) -> float:
    return np.mean(1.0 / (1.0 + np.exp(-(gap + offset))))


def new_item_bias_layer(model: keras.Model):
    """The item layer whose output bias `calibrate_new_items` sets: a `FeatureItemEmbedding`
    with id embeddings and an output bias, or None for any other model (an id-only model
    cannot score items it never trained; a pure content model has no per-item weight)."""
    layer = next((lay for lay in model.layers if lay.name == "item_embedding"), None)
    if isinstance(layer, FeatureItemEmbedding) and layer.use_output_bias:
        return layer
    return None


def calibration_histories(inputs: np.ndarray, samples: int = 4096, seed: int = 0) -> np.ndarray:
    """A seeded sample of at most `samples` rows of `inputs` (model inputs, one history per
    row), kept in their order: what `calibrate_new_items` needs, at a bounded cost.

    Example:

    >>> calibration_histories(np.arange(10).reshape(5, 2), samples=3).shape
    (3, 2)
    """
    rng = np.random.default_rng(seed)
    return inputs[np.sort(rng.choice(len(inputs), size=min(samples, len(inputs)),
                                     replace=False))]


def calibrate_new_items(model: keras.Model, histories: np.ndarray, new_items: np.ndarray,
                        share: float | None = None, batch_size: int = 512) -> float:
    """Set the output bias of a feature-aware model's new items (items that never trained: the
    cold-start protocol's, or those `add_items` added) so that over `histories` they draw
    `share` of the model's probability on average.

    A new item is scored by its features, but nothing put its score on the same footing as
    the trained items': their biases and id vectors were fitted by the softmax, the new
    items' were not. One offset for all new items (their output bias, which they never
    trained) fixes how much they draw in total and keeps how they rank among themselves and
    for each history. The default `share` is the new items' share of the catalogue: a new
    item draws as much as an average item. No interaction with a new item is used, only
    `histories` (model inputs, e.g. the users' latest windows) and the model's own scores.

    Args:
        model: a zoo model built with `item_features=` (with id embeddings and output bias).
        histories: int `(n, max_len)` model inputs; a few thousand are plenty.
        new_items: bool `(num_items + 1,)` mask or int indices of the new items.
        share: in (0, 1); None: `new items / num_items`.
        batch_size: histories scored at a time.

    Returns:
        The offset, now the new items' output bias.

    Example:

    >>> import keras_seqrec as ks
    >>> from keras_seqrec.testing import synthetic_item_features
    >>> model = ks.build_model("gru", 10, 8, item_features=synthetic_item_features(10))
    >>> histories = np.array([[0, 1, 2], [3, 4, 5]])
    >>> offset = calibrate_new_items(model, histories, new_items=[9, 10], share=0.3)
    >>> scores = ks.models.last_position_model(model).predict(histories, verbose=0)
    >>> probabilities = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    >>> round(float(probabilities[:, 9:].sum(axis=1).mean()), 3)
    0.3
    """
    from keras_seqrec.models.common import last_position_model

    layer = new_item_bias_layer(model)
    if layer is None:
        raise ValueError("Only a feature-aware model with id embeddings and an output bias "
                         "(build_model(..., item_features=...)) has new items to calibrate.")
    rows = layer.num_items + 1
    mask = np.asarray(new_items)
    if mask.dtype != bool:
        indices, mask = mask.astype(np.int64), np.zeros(rows, dtype=bool)
        if indices.size and (indices.min() < 1 or indices.max() >= rows):
            raise ValueError(f"New item indices must lie in 1..{rows - 1}.")
        mask[indices] = True
    if mask.shape != (rows,):
        raise ValueError(f"`new_items` must be a bool mask of {rows} entries (padding "
                         f"included); got shape {mask.shape}.")
    mask = mask.copy()
    mask[0] = False
    if share is None:
        share = mask.sum() / layer.num_items
    bias = np.asarray(layer.output_bias.numpy())
    bias[mask] = 0.0
    layer.output_bias.assign(bias)
    scorer = last_position_model(model)
    histories = np.asarray(histories)
    logits = np.concatenate([np.asarray(scorer.predict_on_batch(histories[i:i + batch_size]),
                                        dtype=np.float32)
                             for i in range(0, len(histories), batch_size)])
    offset = new_item_share_offset(logits, mask, float(share))
    bias[mask] = offset
    layer.output_bias.assign(bias)
    return offset
