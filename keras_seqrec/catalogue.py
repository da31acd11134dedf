"""New items in a trained model's catalogue, scored from their features, without retraining."""

from __future__ import annotations

import keras
import numpy as np

from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.layers import FeatureItemEmbedding

_ITEM_SIZED = ("ItemEmbedding", "FeatureItemEmbedding", "ItemScores")


def add_items(model: keras.Model, features: ItemFeatures) -> keras.Model:
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

    Args:
        model: a zoo model built with `item_features=` and the tied output (the default).
        features: the old features with the new items appended (`with_new_items`).

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
    return grow_items(model, features.vocabulary.num_items, features=features)


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
