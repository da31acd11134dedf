"""`rnn`, `lstm`, `gru`: item embedding -> recurrent layers -> scores over the catalogue."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
from keras import layers

from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.models import common
from keras_seqrec.models.registry import register_model

_CELLS = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}


def recurrent_states(x, mask, cell: str, hidden_dim: int, num_layers: int, dropout: float,
                     residual: bool = False):
    """Stack `num_layers` recurrent layers returning every position's state.

    With `residual`, every layer after the first adds its input to its (dropped-out) output,
    `x + dropout(layer(x))`, so a deeper stack starts out as the one-layer stack plus corrections.
    """
    for i in range(num_layers):
        y = _CELLS[cell](hidden_dim, return_sequences=True, name=f"{cell}_{i}")(x, mask=mask)
        y = layers.Dropout(dropout, name=f"{cell}_{i}_dropout")(y)
        x = layers.Add(name=f"{cell}_{i}_residual")([x, y]) if residual and i > 0 else y
    return x  # (batch, max_len, hidden_dim)


def build_recurrent(
    cell: str,
    num_items: int,
    max_len: int,
    *,
    embedding_dim: int,
    hidden_dim: int,
    num_layers: int,
    dropout: float,
    tie_embeddings: bool,
    item_embeddings: Optional[np.ndarray],
    freeze_item_embeddings: bool,
    name: str,
    item_features=None,
    id_embedding: bool = True,
    id_dropout: float = 0.0,
) -> keras.Model:
    common.validate_common(dropout=dropout, num_layers=num_layers)
    embedding_dim = common.check_item_embeddings(item_embeddings, num_items, embedding_dim)

    # Inputs.
    item_ids, ids = common.item_input(max_len)
    mask = common.padding_mask(ids)

    # Layers and graph.
    embedding = common.item_embedding(num_items, embedding_dim, item_features=item_features,
                                      id_embedding=id_embedding, id_dropout=id_dropout)
    x = layers.Dropout(dropout, name="embedding_dropout")(embedding(ids))
    x = recurrent_states(x, mask, cell, hidden_dim, num_layers, dropout)
    logits = common.output_head(x, embedding, tie_embeddings, num_items)

    model = keras.Model(item_ids, logits, name=name)
    return common.finish(model, item_embeddings, freeze_item_embeddings, item_features)


def _register(cell: str, doc_name: str):
    @register_model(cell)
    def builder(
        num_items: int,
        max_len: int,
        embedding_dim: int = 64,
        hidden_dim: int = 64,
        num_layers: int = 1,
        dropout: float = 0.2,
        tie_embeddings: bool = True,
        item_embeddings: Optional[np.ndarray] = None,
        freeze_item_embeddings: bool = False,
        item_features: Optional[ItemFeatures] = None,
        id_embedding: bool = True,
        id_dropout: float = 0.0,
    ) -> keras.Model:
        return build_recurrent(
            cell, num_items, max_len, embedding_dim=embedding_dim, hidden_dim=hidden_dim,
            num_layers=num_layers, dropout=dropout, tie_embeddings=tie_embeddings,
            item_embeddings=item_embeddings, freeze_item_embeddings=freeze_item_embeddings,
            name=cell, item_features=item_features, id_embedding=id_embedding,
            id_dropout=id_dropout,
        )

    builder.__name__ = cell
    builder.__doc__ = f"""{doc_name} next-item model: Embedding, {doc_name} x num_layers, scores.

    Args:
        num_items: catalogue size without padding.
        max_len: input length (left-padded item indices).
        embedding_dim: item vector width (taken from `item_embeddings` when given).
        hidden_dim: recurrent state width.
        num_layers: stacked recurrent layers.
        dropout: drop rate after the embedding and after each recurrent layer.
        tie_embeddings: score with the item embedding itself (fewer weights, usually better);
            otherwise a separate dense output layer ("Dense softmax").
        item_embeddings: optional `(num_items + 1, dim)` matrix to start from, e.g. from
            `keras_seqrec.item2vec.train_item2vec`.
        freeze_item_embeddings: keep the item embedding fixed (with tied output, the output too).
        item_features: optional `keras_seqrec.data.ItemFeatures` of the dataset's
            vocabulary: each item's vector adds pooled embeddings of its features, on the
            input and the tied output side (`FeatureItemEmbedding`), so items unseen in
            training still get scores from their features.
        id_embedding: False drops the per-item id vector and output bias (with
            `item_features`: a pure content model).
        id_dropout: with `item_features`, the share of items whose id vector and bias are
            zeroed at each training step, so the model learns to score items from their
            features alone too (what a new item has); see `FeatureItemEmbedding`.

    Returns:
        A functional model: left-padded item indices `(batch, length)` -> logits
        `(batch, min(length, max_len), num_items + 1)`.

    Example:

    >>> from keras_seqrec import build_model
    >>> build_model("{cell}", num_items=50, max_len=10).output_shape
    (None, None, 51)
    """
    return builder


rnn = _register("rnn", "Simple RNN")
lstm = _register("lstm", "LSTM")
gru = _register("gru", "GRU")
