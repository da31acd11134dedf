"""Parts every model shares: the input, the item embedding, the output head, scoring models."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from keras_seqrec.layers import (
    ItemEmbedding,
    ItemScores,
    LastPosition,
    PaddingMask,
    TruncateSequence,
)
from keras_seqrec.layers.feature_embedding import feature_embedding_for

SEQUENCE_OUTPUT = "sequence_output"


def item_input(max_len: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The model input, left-padded item indices (0 = padding) of any length, and the same
    cut to its most recent `max_len` items, which the rest of the model reads."""
    item_ids = keras.Input(shape=(None,), dtype="int32", name="item_ids")
    return item_ids, TruncateSequence(max_len, name="truncate")(item_ids)


def model_max_len(model: keras.Model) -> int:
    """The input length a zoo model was built for."""
    try:
        return model.get_layer("truncate").max_len
    except ValueError:
        length = model.input_shape[-1]
        if length is None:
            raise ValueError(f"Cannot tell the max_len of model {model.name!r}.") from None
        return int(length)


def padding_mask(item_ids) -> keras.KerasTensor:
    """True at real items, False at padding."""
    return PaddingMask(name="padding_mask")(item_ids)


def check_item_embeddings(item_embeddings, num_items: int, embedding_dim: int) -> int:
    """Validate a pretrained matrix and return the embedding width to use."""
    if item_embeddings is None:
        return embedding_dim
    matrix = np.asarray(item_embeddings)
    if matrix.ndim != 2 or matrix.shape[0] != num_items + 1:
        raise ValueError(
            f"`item_embeddings` must have shape (num_items + 1, dim) = ({num_items + 1}, dim) "
            f"with row 0 for padding; got {matrix.shape}."
        )
    return int(matrix.shape[1])


def item_embedding(num_items: int, embedding_dim: int, use_output_bias: bool = True,
                   item_features=None, id_embedding: bool = True, id_dropout: float = 0.0):
    """The `item_embedding` layer: ids only, or ids and features (`FeatureItemEmbedding`)
    when `item_features` (an `ItemFeatures` of the dataset's vocabulary) is given; without the
    id part and the per-item output bias when `id_embedding` is False (a pure content model:
    no weight belongs to one item, so an item never seen in training is scored like the
    seen items with the same features). `id_dropout` (with features) drops items' id
    vectors in training so that they also learn to score from features alone."""
    if item_features is None:
        if id_dropout:
            raise ValueError("`id_dropout` drops id vectors in favour of item features, which "
                             "this model has none of; pass `item_features`.")
        if not id_embedding:
            raise ValueError("`id_embedding=False` makes a pure content model, which needs "
                             "`item_features` (see keras_seqrec.data.ItemFeatures).")
        return ItemEmbedding(num_items, embedding_dim, use_output_bias=use_output_bias,
                             name="item_embedding")
    size = getattr(getattr(item_features, "vocabulary", None), "size", None)
    if size is None:
        raise ValueError("`item_features` must be a keras_seqrec.data.ItemFeatures; got "
                         f"{type(item_features).__name__}.")
    if size != num_items + 1:
        raise ValueError(
            f"`item_features` cover {size - 1} items but the model has num_items={num_items}; "
            "build them from the same dataset's vocabulary (data.vocabulary).")
    return feature_embedding_for(item_features, num_items, embedding_dim,
                                 use_id_embedding=id_embedding,
                                 use_output_bias=use_output_bias and id_embedding,
                                 id_dropout=id_dropout, name="item_embedding")


def output_head(hidden, embedding: ItemEmbedding, tie_embeddings: bool, num_items: int):
    """Name the final hidden states `sequence_output`, then score them against every item.

    With `tie_embeddings` the states are projected to the embedding width if needed and scored
    by the item embedding itself; otherwise by an untied dense layer (`item_scores`).
    """
    if tie_embeddings and hidden.shape[-1] != embedding.embedding_dim:
        hidden = layers.Dense(embedding.embedding_dim, name="output_projection")(hidden)
    hidden = layers.Identity(name=SEQUENCE_OUTPUT)(hidden)
    if tie_embeddings:
        return embedding(hidden, reverse=True)
    return ItemScores(num_items, name="item_scores")(hidden)


def finish(model: keras.Model, item_embeddings=None, freeze_item_embeddings: bool = False,
           item_features=None):
    """Load a pretrained item matrix and the item features into `item_embedding`, and
    optionally freeze it."""
    layer = model.get_layer("item_embedding")
    if item_features is not None:
        layer.set_features(item_features)
    if item_embeddings is not None:
        if not getattr(layer, "use_id_embedding", True):
            raise ValueError("`item_embeddings` start the id embedding, which "
                             "`id_embedding=False` removes; pass one or the other.")
        layer.embeddings.assign(np.asarray(item_embeddings, dtype="float32"))
    if freeze_item_embeddings:
        layer.trainable = False
    return model


def output_layer(model: keras.Model):
    """The output head of a zoo model and whether it is the tied item embedding."""
    names = {layer.name for layer in model.layers}
    if "item_scores" in names:
        return model.get_layer("item_scores"), False
    return model.get_layer("item_embedding"), True


_LAST_POSITION_GRAPHS = []


def register_last_position_graph(graph):
    """Register `graph(model) -> hidden or None`, a cheaper way to compute the last position's
    `sequence_output` `(batch, dim)` for the zoo models it recognises (None for the others).

    The default takes the last row of every position's states, which costs nothing extra for
    models whose positions are computed independently; a model whose positions interact in a
    later layer (gru_attention's attention) registers a graph that computes that layer for the
    last position only. Used as a decorator in the model's module.
    """
    _LAST_POSITION_GRAPHS.append(graph)
    return graph


def last_position_model(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s weights that outputs logits at the last position only.

    `(batch, length) -> (batch, num_items + 1)`. Evaluation and serving use it so that only
    the scores they need are computed and moved off the device; the scores equal the last
    row of `model`'s (tested for every zoo model).
    """
    hidden = None
    for graph in _LAST_POSITION_GRAPHS:
        hidden = graph(model)
        if hidden is not None:
            break
    if hidden is None:
        hidden = LastPosition(name="last_position")(model.get_layer(SEQUENCE_OUTPUT).output)
    head, tied = output_layer(model)
    logits = head(hidden, reverse=True) if tied else head(hidden)
    return keras.Model(single_input(model), logits, name=f"{model.name}_last")


def single_input(model: keras.Model):
    """The model's input tensor (not a one-element list, so callers can pass a plain array)."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def validate_common(*, dropout: float, num_layers: int, **other_rates: float | None) -> None:
    """Check the shared hyperparameters and any other drop rates a model has (by name, e.g.
    `embedding_dropout=`; None is a rate left to its default)."""
    rates = {"dropout": dropout, **other_rates}
    for name, rate in rates.items():
        if rate is not None and not 0.0 <= rate < 1.0:
            raise ValueError(f"`{name}` is a drop rate in [0, 1); got {rate!r}.")
    if num_layers < 1:
        raise ValueError(f"`num_layers` must be >= 1; got {num_layers!r}.")
