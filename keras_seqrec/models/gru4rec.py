"""`gru4rec`: GRU4Rec, session-based recommendation with recurrent networks."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
from keras import layers

from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.models import common
from keras_seqrec.models.recurrent import recurrent_states
from keras_seqrec.models.registry import register_model


@register_model("gru4rec")
def gru4rec(
    num_items: int,
    max_len: int,
    hidden_dim: int = 100,
    num_layers: int = 1,
    embedding_dim: Optional[int] = None,
    embedding_dropout: float = 0.0,
    dropout: float = 0.25,
    tie_embeddings: bool = True,
    item_embeddings: Optional[np.ndarray] = None,
    freeze_item_embeddings: bool = False,
    item_features: Optional[ItemFeatures] = None,
    id_embedding: bool = True,
    id_dropout: float = 0.0,
) -> keras.Model:
    """GRU4Rec: item embedding -> GRU layers -> scores against the item embeddings.

    As its author specifies it (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018;
    Hidasi & Czapp, RecSys 2023): the input is an item embedding (the one-hot-equivalent
    lookup), the GRU state starts from zero for every sequence (so with
    `prepare(..., session_gap=...)` it is reset at every session boundary, in training and in
    evaluation alike), and the final state is scored against the item embeddings, shared with
    the input ("constrained embedding", `tie_embeddings=True`). Dropout rates are drop
    probabilities. Train it with full cross-entropy (the default), or as the author recommends
    for large catalogues with many popularity-sampled negatives:
    `fit_recommender(model, data, loss=BPRMax(num_negatives=2048, alpha=0.75, reg=1.0))` or
    `loss=SampledSoftmax(num_negatives=2048, alpha=0.5)` (the cross-entropy variant).

    Args:
        num_items: catalogue size without padding.
        max_len: input length (left-padded item indices).
        hidden_dim: GRU units (100 in the papers' defaults).
        num_layers: stacked GRU layers.
        embedding_dim: item embedding width; default `hidden_dim`, so the final state scores
            directly against the shared embedding.
        embedding_dropout: drop probability on the input embeddings.
        dropout: drop probability on the GRU outputs.
        tie_embeddings: score against the input embedding (constrained embedding).
        item_embeddings: optional `(num_items + 1, dim)` starting matrix.
        freeze_item_embeddings: keep the item embedding fixed.
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
        `(batch, min(length, max_len), num_items + 1)` (raw scores, no softmax).

    Example:

    >>> from keras_seqrec import build_model
    >>> build_model("gru4rec", num_items=50, max_len=10).output_shape
    (None, None, 51)
    """
    common.validate_common(dropout=dropout, num_layers=num_layers,
                           embedding_dropout=embedding_dropout)
    embedding_dim = common.check_item_embeddings(
        item_embeddings, num_items, embedding_dim or hidden_dim
    )

    # Inputs.
    item_ids, ids = common.item_input(max_len)
    mask = common.padding_mask(ids)

    # Layers and graph.
    embedding = common.item_embedding(num_items, embedding_dim, item_features=item_features,
                                      id_embedding=id_embedding, id_dropout=id_dropout)
    x = layers.Dropout(embedding_dropout, name="embedding_dropout")(embedding(ids))
    x = recurrent_states(x, mask, "gru", hidden_dim, num_layers, dropout)
    logits = common.output_head(x, embedding, tie_embeddings, num_items)

    model = keras.Model(item_ids, logits, name="gru4rec")
    return common.finish(model, item_embeddings, freeze_item_embeddings, item_features)
