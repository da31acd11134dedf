"""Item vectors built from an id embedding and the items' side features, tied to the output."""

from __future__ import annotations

from typing import Mapping, Optional

import keras
import numpy as np
from keras import ops

from keras_seqrec.layers.item_embedding import ItemEmbedding


@keras.saving.register_keras_serializable(package="keras_seqrec")
class FeatureItemEmbedding(ItemEmbedding):
    """`ItemEmbedding` whose item vectors add pooled embeddings of the items' features.

    The vector of item i is `id_i + sum_f pool_f(i)`: for a token field (genres, brand,
    category path, title words) the mean of the embeddings of the item's tokens, for a dense
    field (a user's text or image vectors) a learned projection of the item's vector, or a
    learned "missing" vector where the item has none. The same vectors are looked up on the
    input side and scored on the output side, so an item that never occurred in training
    still gets a score from its features; with `use_id_embedding=False` the model knows items
    by their features only (a pure content model, no per-item weight but the output bias).

    The feature tables (token ids per item, dense vectors) are non-trainable weights of the
    layer, so they travel with `.keras` files and SavedModels; set them with `set_features`
    after the layer is built (`build_model(..., item_features=...)` does).

    Args:
        num_items: catalogue size, excluding padding.
        embedding_dim: width of the item vectors.
        token_fields: field -> `(cardinality, width)`: the number of token ids (the two
            reserved ones, padding 0 and missing 1, included) and the tokens per item.
        dense_fields: field -> input vector width.
        use_id_embedding: add a trained per-item vector (the ordinary id embedding).
        id_initializer: initializer of the id vectors. Zeros by default: the features already
            tell items apart, and an item that never trains (new in the cold-start protocol,
            left out of the softmax) keeps a zero id vector, so its features alone score it
            instead of a random vector.
        id_dropout: in training, the share of items whose id vector and output bias are set
            to zero at each step (independently on the input and the output side), so that
            the model also learns to place items from their features alone, as it must for an
            item that never trained (DropoutNet, Volkovs et al., NeurIPS 2017). 0 turns it off.
        seed: seed of the id dropout.
        use_output_bias: a learned per-item bias on the output side.
        embeddings_initializer: initializer of the token tables.

    Example:

    >>> layer = FeatureItemEmbedding(5, 4, token_fields={"genre": (4, 2)})
    >>> layer.build()
    >>> layer.set_feature_arrays({"genre": np.array([[0, 0], [2, 3], [2, 0], [3, 0],
    ...                                              [1, 0], [1, 0]])})
    >>> tuple(layer(ops.array([[0, 3]])).shape), tuple(layer.item_table().shape)
    ((1, 2, 4), (6, 4))
    """

    def __init__(self, num_items: int, embedding_dim: int, *,
                 token_fields: Optional[Mapping[str, tuple]] = None,
                 dense_fields: Optional[Mapping[str, int]] = None,
                 use_id_embedding: bool = True, id_initializer="zeros", id_dropout: float = 0.0,
                 seed: Optional[int] = None, **kwargs):
        super().__init__(num_items, embedding_dim, **kwargs)
        self.id_initializer = keras.initializers.get(id_initializer)
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"`id_dropout` is a drop rate in [0, 1); got {id_dropout!r}.")
        self.id_dropout, self.seed = float(id_dropout), seed
        self._seed_generator = keras.random.SeedGenerator(seed)
        self.token_fields = {k: (int(v[0]), int(v[1])) for k, v in (token_fields or {}).items()}
        self.dense_fields = {k: int(v) for k, v in (dense_fields or {}).items()}
        self.use_id_embedding = bool(use_id_embedding)
        if not self.token_fields and not self.dense_fields:
            raise ValueError("FeatureItemEmbedding needs at least one token or dense field; "
                             "use ItemEmbedding for ids only.")

    def build(self, input_shape=None):
        rows = self.num_items + 1
        if self.use_id_embedding:
            self.embeddings = self.add_weight(name="embeddings",
                                              shape=(rows, self.embedding_dim),
                                              initializer=self.id_initializer)
        if self.use_output_bias:
            self.output_bias = self.add_weight(name="output_bias", shape=(rows,),
                                               initializer="zeros")
        self._tokens, self._token_tables = {}, {}
        for field, (cardinality, width) in self.token_fields.items():
            self._tokens[field] = self.add_weight(
                name=f"{field}_tokens", shape=(rows, width), dtype="int32",
                initializer="zeros", trainable=False)
            self._token_tables[field] = self.add_weight(
                name=f"{field}_embeddings", shape=(cardinality, self.embedding_dim),
                initializer=self.embeddings_initializer)
        self._vectors, self._present, self._kernels, self._missing = {}, {}, {}, {}
        for field, width in self.dense_fields.items():
            self._vectors[field] = self.add_weight(
                name=f"{field}_vectors", shape=(rows, width), initializer="zeros",
                trainable=False)
            self._present[field] = self.add_weight(
                name=f"{field}_present", shape=(rows, 1), initializer="zeros",
                trainable=False)
            self._kernels[field] = self.add_weight(
                name=f"{field}_kernel", shape=(width, self.embedding_dim),
                initializer="glorot_uniform")
            self._missing[field] = self.add_weight(
                name=f"{field}_missing", shape=(self.embedding_dim,), initializer="zeros")
        self.built = True

    def set_feature_arrays(self, tokens: Mapping[str, np.ndarray] = (),
                           dense: Mapping[str, np.ndarray] = (),
                           present: Mapping[str, np.ndarray] = ()) -> None:
        """Load the token ids `(num_items + 1, width)` of every token field and the vectors
        `(num_items + 1, d)` (with `present`, bool per item) of every dense field."""
        tokens, dense, present = dict(tokens), dict(dense), dict(present)
        expected = (set(self.token_fields), set(self.dense_fields))
        if (set(tokens), set(dense)) != expected:
            raise ValueError(f"Expected token fields {sorted(expected[0])} and dense fields "
                             f"{sorted(expected[1])}; got {sorted(tokens)} and {sorted(dense)}.")
        for field, matrix in tokens.items():
            matrix = np.asarray(matrix, dtype="int32")
            cardinality, _ = self.token_fields[field]
            if matrix.min() < 0 or matrix.max() >= cardinality:
                raise ValueError(f"Token field {field!r}: ids must lie in [0, {cardinality}).")
            self._tokens[field].assign(matrix)
        for field, matrix in dense.items():
            self._vectors[field].assign(np.asarray(matrix, dtype="float32"))
            mask = present.get(field, np.any(np.asarray(matrix) != 0, axis=1))
            self._present[field].assign(np.asarray(mask, dtype="float32").reshape(-1, 1))

    def set_features(self, features) -> None:
        """Load an `ItemFeatures` aligned with this layer's catalogue (`vocabulary.size` rows)."""
        if features.vocabulary.size != self.num_items + 1:
            raise ValueError(
                f"The item features cover {features.vocabulary.size - 1} items but the model "
                f"has {self.num_items}; build them from the same dataset's vocabulary.")
        self.set_feature_arrays(features.categorical, features.dense, features.has_dense)

    def item_vectors(self, training: bool = False):
        table = self._feature_table()
        bias = self.output_bias if self.use_output_bias else None
        if not self.use_id_embedding:
            return table, bias
        ids = self.embeddings
        if training and self.id_dropout > 0:
            draw = keras.random.uniform((self.num_items + 1, 1), seed=self._seed_generator)
            keep = ops.cast(ops.greater_equal(draw, self.id_dropout), ids.dtype)
            ids = ids * keep
            if bias is not None:
                bias = bias * ops.cast(keep[:, 0], bias.dtype)
        return ids + table, bias

    def _feature_table(self):
        """The sum of the feature parts of every item's vector (no id part)."""
        parts = []
        for field, tokens in self._tokens.items():
            vectors = ops.take(self._token_tables[field], tokens, axis=0)  # (rows, width, d)
            real = ops.cast(ops.not_equal(tokens, 0), vectors.dtype)
            total = ops.sum(vectors * ops.expand_dims(real, -1), axis=1)
            parts.append(total / ops.maximum(ops.sum(real, axis=1, keepdims=True), 1.0))
        for field, vectors in self._vectors.items():
            present = self._present[field]
            projected = ops.matmul(vectors, self._kernels[field])
            parts.append(present * projected + (1.0 - present) * self._missing[field])
        table = parts[0]
        for part in parts[1:]:
            table = table + part
        return table

    def get_config(self):
        config = super().get_config()
        config.update(token_fields={k: list(v) for k, v in self.token_fields.items()},
                      dense_fields=dict(self.dense_fields),
                      use_id_embedding=self.use_id_embedding,
                      id_initializer=keras.initializers.serialize(self.id_initializer),
                      id_dropout=self.id_dropout, seed=self.seed)
        return config


def feature_embedding_for(features, num_items: int, embedding_dim: int, *,
                          use_id_embedding: bool = True, **kwargs) -> FeatureItemEmbedding:
    """A `FeatureItemEmbedding` shaped for an `ItemFeatures` (its arrays are set later, once the
    layer is built, with `set_features`)."""
    token_fields = {field: (features.cardinality(field), matrix.shape[1])
                    for field, matrix in features.categorical.items()}
    dense_fields = {field: matrix.shape[1] for field, matrix in features.dense.items()}
    return FeatureItemEmbedding(num_items, embedding_dim, token_fields=token_fields,
                                dense_fields=dense_fields, use_id_embedding=use_id_embedding,
                                **kwargs)
