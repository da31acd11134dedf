"""`gru_w2v`: the GRU model started from Word2Vec (item2vec) item embeddings."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np

from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.models.recurrent import build_recurrent
from keras_seqrec.models.registry import register_model


@register_model("gru_w2v")
def gru_w2v(
    num_items: int,
    max_len: int,
    item_embeddings: np.ndarray,
    hidden_dim: int = 64,
    num_layers: int = 1,
    dropout: float = 0.2,
    tie_embeddings: bool = True,
    freeze_item_embeddings: bool = False,
    item_features: Optional[ItemFeatures] = None,
    id_dropout: float = 0.0,
) -> keras.Model:
    """GRU whose item embeddings start from item2vec vectors (required `item_embeddings`).

    Get the matrix with `keras_seqrec.item2vec.train_item2vec(data)`, which trains gensim
    skip-gram on the training sequences only. Any other model accepts `item_embeddings=` too;
    this name is the design card's variant. With `item_features`, each item's vector adds
    pooled embeddings of its features to its item2vec start, and `id_dropout` works as in
    `gru`.

    Example:

    >>> import numpy as np
    >>> from keras_seqrec import build_model
    >>> matrix = np.random.default_rng(0).normal(size=(51, 16)).astype("float32")
    >>> build_model("gru_w2v", num_items=50, max_len=10, item_embeddings=matrix).output_shape
    (None, None, 51)
    """
    if item_embeddings is None:
        raise ValueError(
            "gru_w2v needs `item_embeddings`: pass "
            "`keras_seqrec.item2vec.train_item2vec(data)` (or use 'gru')."
        )
    return build_recurrent(
        "gru", num_items, max_len, embedding_dim=0, hidden_dim=hidden_dim,
        num_layers=num_layers, dropout=dropout, tie_embeddings=tie_embeddings,
        item_embeddings=item_embeddings, freeze_item_embeddings=freeze_item_embeddings,
        name="gru_w2v", item_features=item_features, id_dropout=id_dropout,
    )
