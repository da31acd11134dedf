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
    config = model.get_config()
    for entry in config["layers"]:
        if entry["class_name"] in _ITEM_SIZED:
            entry["config"]["num_items"] = new
    grown = keras.Model.from_config(config)
    for source, target in zip(model.layers, grown.layers):
        if source.name != "item_embedding":
            target.set_weights(source.get_weights())
    trained = {w.path.split("/")[-1]: np.asarray(w.numpy()) for w in layer.weights}
    target = grown.get_layer("item_embedding")
    for variable in target.weights:
        name = variable.path.split("/")[-1]
        value = trained[name]
        if value.shape == tuple(variable.shape):
            variable.assign(value)
            continue
        # An item-sized table: old rows kept, new rows filled below or by set_features.
        rows = np.zeros(tuple(variable.shape), dtype=value.dtype)
        rows[:old + 1] = value
        if name == "output_bias":  # what an id-dropped item trains with, else the average
            rows[old + 1:] = 0.0 if layer.id_dropout > 0 else value[1:].mean()
        variable.assign(rows)
    target.set_features(features)
    return grown
