"""Item embedding that doubles as the tied output layer, and the untied output layer."""

from __future__ import annotations

import keras
from keras import ops

# The score of what must never be chosen (padding, masked candidates, disallowed attention
# keys): finite, so sums and gradients stay finite, and far below any real score.
MASKED_SCORE = -1e9


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
    return ops.where(is_padding, ops.cast(MASKED_SCORE, "float32"), logits)


def softmax_cross_entropy_rows(hidden, kernel, bias, targets, chunk_size: int = 512,
                               excluded=None, matmul_dtype: str = "float32"):
    """Per-row full-softmax cross-entropy against every item, never holding all the logits.

    `hidden` `(n, d)`, `kernel` `(num_items + 1, d)`, `bias` `(num_items + 1,)` or None,
    `targets` `(n,)` item indices. Returns `(n,)` float32: `logsumexp(logits) - logits[target]`
    with `logits = hidden @ kernel.T + bias` and the padding column 0 excluded from the
    softmax; rows whose target is 0 (padding) get 0. Rows are processed `chunk_size` at a time
    and the backward pass recomputes each chunk's logits instead of keeping them, so the
    `(n, num_items + 1)` matrix never exists (one ML-1M batch would need 0.33 GiB for it;
    on 2 CPU cores the passes over it cost as much as the matrix products). The result and
    its gradients equal `sparse_categorical_crossentropy` on `mask_padding_logits(logits)`
    to float32 round-off. `matmul_dtype="bfloat16"` runs the four products of each block in
    bfloat16 (logsumexp, exponentials and sums stay float32): on a CPU with AMX it made the
    whole loss about a tenth faster, with about 2% relative error in the gradients
    (`python benchmarks/speed.py head`), so it is not the default.

    Example:

    >>> rows = softmax_cross_entropy_rows(ops.zeros((2, 4)), ops.ones((3, 4)), None,
    ...                                   ops.array([1, 0]))
    >>> [round(float(v), 4) for v in ops.convert_to_numpy(rows)]  # log(2), then padding
    [0.6931, 0.0]
    """
    hidden = ops.cast(hidden, "float32")
    kernel = ops.cast(kernel, "float32")
    width = ops.shape(kernel)[0]
    if bias is None:
        bias = ops.zeros((width,), "float32")
    # The bias rides along as one more column, and the padding column's bias is masked.
    bias = mask_padding_logits(bias)
    if excluded is not None:
        bias = ops.where(ops.convert_to_tensor(excluded, "bool"), MASKED_SCORE, bias)
    kernel = ops.concatenate([kernel, ops.expand_dims(bias, -1)], axis=-1)
    targets = ops.cast(targets, "int32")
    n = ops.shape(hidden)[0]
    # Rows with a real target first, so that only their chunks are computed: a padded row
    # (a third to a half of the rows of a length-bucketed batch on sparse logs) costs nothing.
    is_real = ops.not_equal(targets, 0)
    order = ops.argsort(ops.cast(ops.logical_not(is_real), "int32"))
    live_chunks = (ops.sum(ops.cast(is_real, "int32")) + chunk_size - 1) // chunk_size
    hidden = ops.take(hidden, order, axis=0)
    targets = ops.take(targets, order, axis=0)
    chunks = (n + chunk_size - 1) // chunk_size
    pad = chunks * chunk_size - n
    hidden = ops.concatenate([hidden, ops.ones((n, 1), "float32")], axis=-1)
    hidden = ops.pad(hidden, [[0, pad], [0, 0]])
    padded_targets = ops.pad(targets, [[0, pad]])
    real = ops.cast(ops.not_equal(padded_targets, 0), "float32")

    def product(equation, a, b):  # float32 out, whatever the products run in
        return ops.cast(ops.einsum(equation, ops.cast(a, matmul_dtype),
                                   ops.cast(b, matmul_dtype)), "float32")

    @ops.custom_gradient
    def cross_entropy(hidden, kernel):
        blocks = ops.reshape(hidden, (chunks, chunk_size, -1))

        def forward_block(i, lse):
            value = ops.logsumexp(product("rd,id->ri", blocks[i], kernel), axis=-1)
            return ops.slice_update(lse, (i, 0), ops.expand_dims(value, 0))

        lse = ops.reshape(ops.fori_loop(0, live_chunks, forward_block,
                                        ops.zeros((chunks, chunk_size), "float32")), (-1,))
        target_vectors = ops.take(kernel, padded_targets, axis=0)
        loss = (lse - ops.sum(hidden * target_vectors, axis=-1)) * real

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            scale = ops.cast(upstream, "float32") * real  # (rows,)
            # The softmax of a block is exp(logits - lse): with -lse as one more column of the
            # rows (against a column of ones) the matrix product yields it shifted, and the
            # rows' scale multiplies the thin (rows, d) operands, not the (rows, items) block,
            # so the exponential is the only elementwise pass over the block.
            shifted = ops.concatenate([blocks, -ops.reshape(lse, (chunks, chunk_size, 1))], -1)
            shifted_kernel = ops.concatenate([kernel, ops.ones((width, 1), "float32")], -1)
            scale_blocks = ops.reshape(scale, (chunks, chunk_size, 1))
            scaled = blocks * scale_blocks

            def block(i, carry):
                grad_h, grad_k = carry
                p = ops.exp(product("rd,id->ri", shifted[i], shifted_kernel))
                grad_h = ops.slice_update(grad_h, (i, 0, 0), ops.expand_dims(
                    product("ri,id->rd", p, kernel) * scale_blocks[i], 0))
                return grad_h, grad_k + product("ri,rd->id", p, scaled[i])

            # Chunks past the live ones hold padded rows only: their gradient is zero.
            grad_h, grad_k = ops.fori_loop(0, live_chunks, block, (ops.zeros_like(blocks),
                                                                   ops.zeros_like(kernel)))
            grad_h = ops.reshape(grad_h, ops.shape(hidden)) - target_vectors * scale[:, None]
            grad_k = grad_k - ops.segment_sum(hidden * scale[:, None], padded_targets,
                                              num_segments=width)
            return grad_h, grad_k

        return loss, grad

    losses = cross_entropy(hidden, kernel)[:n]
    return ops.take(losses, ops.argsort(order), axis=0)  # back to the rows' own order


def position_cross_entropy(hidden, kernel, bias, targets, excluded=None):
    """`softmax_cross_entropy_rows` for hidden states `(batch, length, d)` and targets
    `(batch, length)`: `(batch, length)` losses, 0 where the target is padding."""
    shape = ops.shape(targets)
    rows = softmax_cross_entropy_rows(ops.reshape(hidden, (-1, ops.shape(hidden)[-1])),
                                      kernel, bias, ops.reshape(targets, (-1,)),
                                      excluded=excluded)
    return ops.reshape(rows, shape)


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
        targets: with `reverse=True`, return the full-softmax cross-entropy of these
            `(batch, length)` targets instead of the logits (`position_cross_entropy`): what
            `fit_recommender` trains the default loss with, without materialising the logits.
        excluded: with `targets`, a bool `(num_items + 1,)` mask of items left out of that
            softmax (the cold-start protocol's new items).

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

    def item_vectors(self, training: bool = False):
        """`(table, bias)`: the `(num_items + 1, embedding_dim)` item vectors, looked up and
        scored alike, and the output bias or None (subclasses compute them, e.g. from item
        features, and may regularise them in training)."""
        return self.embeddings, (self.output_bias if self.use_output_bias else None)

    def item_table(self):
        """The item vectors as inference uses them."""
        return self.item_vectors()[0]

    def call(self, inputs, reverse: bool = False, candidates=None, targets=None, mask=None,
             excluded=None, training=None):
        # `mask` (from upstream Keras masking) is accepted and not propagated: padding is
        # handled by explicit masks in the models.
        table, bias = self.item_vectors(training=bool(training))
        if reverse and targets is not None:
            return position_cross_entropy(inputs, table, bias, targets, excluded)
        kernel = ops.cast(table, self.compute_dtype)
        if reverse and candidates is not None:
            return score_candidates(inputs, kernel, bias, candidates)
        if reverse:
            logits = ops.matmul(inputs, ops.transpose(kernel))
            if bias is not None:
                logits = logits + ops.cast(bias, logits.dtype)
            return mask_padding_logits(logits)
        indices = ops.cast(inputs, "int32")
        vectors = ops.take(kernel, indices, axis=0)
        # Zero the padding row on the way in, so padding carries no signal even if the row moved.
        keep = ops.cast(ops.not_equal(indices, 0), vectors.dtype)
        return vectors * ops.expand_dims(keep, -1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_spec(self, inputs, reverse: bool = False, candidates=None,
                            targets=None, mask=None, excluded=None, training=None):
        if reverse and targets is not None:
            return keras.KerasTensor(tuple(targets.shape), dtype="float32")
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

    def call(self, inputs, candidates=None, targets=None, mask=None, excluded=None):
        if targets is not None:  # see ItemEmbedding: the loss without the logits
            return position_cross_entropy(inputs, ops.transpose(self.dense.kernel),
                                          self.dense.bias, targets, excluded)
        if candidates is not None:
            kernel = ops.transpose(ops.cast(self.dense.kernel, self.compute_dtype))
            return score_candidates(inputs, kernel, self.dense.bias, candidates)
        return mask_padding_logits(self.dense(inputs))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_spec(self, inputs, candidates=None, targets=None, mask=None,
                            excluded=None):
        if targets is not None:
            return keras.KerasTensor(tuple(targets.shape), dtype="float32")
        width = self.num_items + 1 if candidates is None else candidates.shape[-1]
        return keras.KerasTensor(tuple(inputs.shape[:-1]) + (width,), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(num_items=self.num_items)
        return config
