"""`sasrec`: self-attentive sequential recommendation (causal Transformer encoder)."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
from keras import layers

from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.layers import CausalPaddingMask, PaddingMask, PositionEmbedding
from keras_seqrec.models import common
from keras_seqrec.models.registry import register_model


@register_model("sasrec")
def sasrec(
    num_items: int,
    max_len: int,
    embedding_dim: int = 64,
    num_layers: int = 2,
    num_heads: int = 1,
    dropout: float = 0.2,
    tie_embeddings: bool = True,
    item_embeddings: Optional[np.ndarray] = None,
    freeze_item_embeddings: bool = False,
    normalized_residual: bool = False,
    ffn_dim: Optional[int] = None,
    item_features: Optional[ItemFeatures] = None,
    id_embedding: bool = True,
    id_dropout: float = 0.0,
) -> keras.Model:
    """SASRec: item + learned position embeddings, causal self-attention blocks, tied scores.

    Each block is pre-layer-norm multi-head self-attention (causal, padding keys masked) and a
    point-wise feed-forward network, each with dropout and a residual connection; the sequence
    is re-masked after every block so padding carries nothing. Scores are tied to the item
    embedding. Train it with the default full softmax cross-entropy at every position
    (Klenitskiy & Vasilev, RecSys 2023).

    Args:
        num_items: catalogue size without padding.
        max_len: input length (left-padded item indices).
        embedding_dim: width of items, positions and every block (the paper's hidden size).
        num_layers: self-attention blocks.
        num_heads: attention heads (must divide `embedding_dim`).
        dropout: drop rate on embeddings, attention weights and feed-forward outputs.
        tie_embeddings: score with the item embedding (as the paper does).
        item_embeddings: optional `(num_items + 1, dim)` starting matrix.
        freeze_item_embeddings: keep the item embedding fixed.
        normalized_residual: add each sub-layer's output to its layer-normalised input, as the
            original SASRec code does, instead of to the un-normalised stream (standard
            pre-layer-norm). Keys and values of the attention are un-normalised either way.
        ffn_dim: inner width of the point-wise feed-forward network; defaults to
            `embedding_dim`, as in the paper (Transformers in NLP use 4 times the width).
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
    >>> build_model("sasrec", num_items=50, max_len=10).output_shape
    (None, None, 51)

    Reference:
        Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
    """
    common.validate_common(dropout=dropout, num_layers=num_layers)
    embedding_dim = common.check_item_embeddings(item_embeddings, num_items, embedding_dim)
    if num_heads < 1 or embedding_dim % num_heads:
        raise ValueError(
            f"`num_heads` must divide `embedding_dim` ({embedding_dim}); got {num_heads}."
        )
    if ffn_dim is not None and ffn_dim < 1:
        raise ValueError(f"`ffn_dim` must be a positive width; got {ffn_dim}.")

    # Inputs.
    item_ids, ids = common.item_input(max_len)
    mask = common.padding_mask(ids)
    attention_mask = CausalPaddingMask(name="attention_mask")(mask)
    real = PaddingMask(as_float=True, name="real_positions")(ids)  # (batch, max_len, 1)

    # Layers and graph.
    embedding = common.item_embedding(num_items, embedding_dim, item_features=item_features,
                                      id_embedding=id_embedding, id_dropout=id_dropout)
    x = layers.Rescaling(float(np.sqrt(embedding_dim)), name="embedding_scale")(
        embedding(ids)
    )
    x = PositionEmbedding(max_len, name="position_embedding")(x)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    x = layers.Multiply(name="embedding_mask")([x, real])
    for i in range(num_layers):
        q = layers.LayerNormalization(epsilon=1e-8, name=f"block_{i}_attention_norm")(x)
        h = layers.MultiHeadAttention(
            num_heads, embedding_dim // num_heads, dropout=dropout,
            name=f"block_{i}_attention",
        )(q, x, attention_mask=attention_mask)
        skip = q if normalized_residual else x
        x = layers.Add(name=f"block_{i}_attention_residual")([skip, h])
        q = layers.LayerNormalization(epsilon=1e-8, name=f"block_{i}_ffn_norm")(x)
        h = layers.Dense(ffn_dim or embedding_dim, activation="relu",
                         name=f"block_{i}_ffn_1")(q)
        h = layers.Dropout(dropout, name=f"block_{i}_ffn_dropout_1")(h)
        h = layers.Dense(embedding_dim, name=f"block_{i}_ffn_2")(h)
        h = layers.Dropout(dropout, name=f"block_{i}_ffn_dropout_2")(h)
        skip = q if normalized_residual else x
        x = layers.Add(name=f"block_{i}_ffn_residual")([skip, h])
        x = layers.Multiply(name=f"block_{i}_mask")([x, real])
    x = layers.LayerNormalization(epsilon=1e-8, name="final_norm")(x)
    logits = common.output_head(x, embedding, tie_embeddings, num_items)

    model = keras.Model(item_ids, logits, name="sasrec")
    return common.finish(model, item_embeddings, freeze_item_embeddings, item_features)

