"""Item embedding that doubles as the tied output layer, and the untied output layer."""

from __future__ import annotations

import keras
from keras import ops


def score_candidates(hidden, table, bias, candidates):
    """Scores of candidate items only, never the whole catalogue.

    `candidates` of shape `(num,)` are shared by every position: `(..., d) -> (..., num)`.
    Of shape `(batch, length, num)` they are per position: `(batch, length, d)` ->
    `(batch, length, num)`. Returns float32.
    """
    candidates = ops.cast(candidates, "int32")
    vectors = ops.take(table, candidates, axis=0)
    if len(candidates.shape) == 1:
        scores = ops.matmul(hidden, ops.transpose(vectors))
    else:
        scores = ops.sum(ops.expand_dims(hidden, -2) * vectors, axis=-1)
    if bias is not None:
        scores = scores + ops.take(ops.cast(bias, scores.dtype), candidates, axis=0)
    return ops.cast(scores, "float32")


def mask_padding_logits(logits):
    """Set the padding column (index 0) to a very negative value, in float32.

    After this no probability mass can go to padding, and padding is never ranked in a top-K.
    """
    logits = ops.cast(logits, "float32")
    width = ops.shape(logits)[-1]
    is_padding = ops.equal(ops.arange(width), 0)
    return ops.where(is_padding, ops.cast(-1e9, "float32"), logits)


@keras.saving.register_keras_serializable(package="keras_seqrec")
class ItemEmbedding(keras.layers.Layer):
    """Item embedding table that also scores hidden states against every item (tied output).

    Called on item indices it looks up embeddings (row 0 is the padding row). Called with
    `reverse=True` on hidden states of width `embedding_dim` it returns logits over all
    `num_items + 1` indices, `hidden @ embeddings.T (+ bias)`, with the padding column masked.
    Reading the variable inside `call` is what makes the output really tied in a functional
    model (a matmul against `layer.embeddings` written in the graph would freeze a snapshot).

    Args:
        num_items: catalogue size, excluding padding.
        embedding_dim: width of the item vectors.
        use_output_bias: add a learned per-item bias to the logits in reverse mode.
        embeddings_initializer: initializer of the table.

    Call arguments:
        inputs: int indices `(batch, length)`, or hidden states `(..., embedding_dim)` when
            `reverse=True`.
        reverse: bool, score instead of look up.
        candidates: with `reverse=True`, score only these item indices (see
            `score_candidates`); used by the sampled losses.

    Example:

    >>> layer = ItemEmbedding(num_items=5, embedding_dim=4)
    >>> tuple(layer(ops.array([[0, 3]])).shape)
    (1, 2, 4)
    >>> tuple(layer(ops.ones((1, 2, 4)), reverse=True).shape)
    (1, 2, 6)
    """

    def __init__(self, num_items: int, embedding_dim: int, use_output_bias: bool = True,
                 embeddings_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.embedding_dim = int(embedding_dim)
        self.use_output_bias = bool(use_output_bias)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_items + 1, self.embedding_dim),
            initializer=self.embeddings_initializer,
        )
        if self.use_output_bias:
            self.output_bias = self.add_weight(
                name="output_bias", shape=(self.num_items + 1,), initializer="zeros"
            )
        self.built = True

    def call(self, inputs, reverse: bool = False, candidates=None, mask=None):
        # `mask` (from upstream Keras masking) is accepted and not propagated: padding is
        # handled by explicit masks in the models.
        if reverse and candidates is not None:
            kernel = ops.cast(self.embeddings, self.compute_dtype)
            bias = self.output_bias if self.use_output_bias else None
            return score_candidates(inputs, kernel, bias, candidates)
        if reverse:
            kernel = ops.cast(self.embeddings, self.compute_dtype)
            logits = ops.matmul(inputs, ops.transpose(kernel))
            if self.use_output_bias:
                logits = logits + ops.cast(self.output_bias, logits.dtype)
            return mask_padding_logits(logits)
        indices = ops.cast(inputs, "int32")
        vectors = ops.take(ops.cast(self.embeddings, self.compute_dtype), indices, axis=0)
        # Zero the padding row on the way in, so padding carries no signal even if the row moved.
        keep = ops.cast(ops.not_equal(indices, 0), vectors.dtype)
        return vectors * ops.expand_dims(keep, -1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_spec(self, inputs, reverse: bool = False, candidates=None, mask=None):
        if reverse and candidates is not None:
            num = candidates.shape[-1]
            return keras.KerasTensor(tuple(inputs.shape[:-1]) + (num,), dtype="float32")
        if reverse:
            return keras.KerasTensor(tuple(inputs.shape[:-1]) + (self.num_items + 1,),
                                     dtype="float32")
        return keras.KerasTensor(tuple(inputs.shape) + (self.embedding_dim,),
                                 dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_items=self.num_items,
            embedding_dim=self.embedding_dim,
            use_output_bias=self.use_output_bias,
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_seqrec")
class ItemScores(keras.layers.Layer):
    """Untied output layer: a dense projection to `num_items + 1` logits, padding masked.

    Example:

    >>> tuple(ItemScores(num_items=5)(ops.ones((2, 3, 8))).shape)
    (2, 3, 6)
    """

    def __init__(self, num_items: int, **kwargs):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.dense = keras.layers.Dense(self.num_items + 1, name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.built = True

    def call(self, inputs, candidates=None, mask=None):
        if candidates is not None:
            kernel = ops.transpose(ops.cast(self.dense.kernel, self.compute_dtype))
            return score_candidates(inputs, kernel, self.dense.bias, candidates)
        return mask_padding_logits(self.dense(inputs))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_spec(self, inputs, candidates=None, mask=None):
        width = self.num_items + 1 if candidates is None else candidates.shape[-1]
        return keras.KerasTensor(tuple(inputs.shape[:-1]) + (width,), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(num_items=self.num_items)
        return config
