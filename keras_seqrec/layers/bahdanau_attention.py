"""Causal Bahdanau (additive) attention over a sequence of hidden states."""

from __future__ import annotations

import keras
from keras import ops

from keras_seqrec.layers.item_embedding import MASKED_SCORE


QUERY_BLOCK = 16  # queries per block of `additive_scores` in the layer's full call
QUERIES = ("position", "learned")  # CausalBahdanauAttention(query=...)


def additive_scores(query, key, score_vector, chunk_size: int = QUERY_BLOCK):
    """`scores[b, t, s] = score_vector . tanh(query[b, t] + key[b, s])`, a block of queries at
    a time, never holding the whole `(batch, queries, keys, units)` tensor.

    `query` `(batch, queries, units)`, `key` `(batch, keys, units)`, `score_vector` `(units,)`;
    returns float32 `(batch, queries, keys)`. The forward pass keeps only the scores, and the
    backward pass recomputes each block's `tanh` to form its gradients, so memory holds one
    block, `chunk_size / queries` of the full tensor (at ML-1M's length 200 and batch 128 the
    full tensor is 1.3 GB, one block of 16 queries 105 MB). Values and gradients equal the
    direct computation to float32 round-off, and time is about the same: over 8 ML-1M
    gru_attention training steps (batch 128, lengths 50-200), alternating with the direct
    computation in one process, blocks of 16 queries took 1-5% less.

    Example:

    >>> scores = additive_scores(ops.zeros((1, 3, 2)), ops.ones((1, 4, 2)), ops.ones((2,)))
    >>> tuple(scores.shape), round(float(scores[0, 0, 0]), 4)  # 2 * tanh(1)
    ((1, 3, 4), 1.5232)
    """
    query = ops.cast(query, "float32")
    key = ops.cast(key, "float32")
    score_vector = ops.cast(score_vector, "float32")
    batch, queries = ops.shape(query)[0], ops.shape(query)[1]
    chunks = (queries + chunk_size - 1) // chunk_size
    # (chunks, batch, chunk_size, units): one block of queries per step.
    padded = ops.pad(query, [[0, 0], [0, chunks * chunk_size - queries], [0, 0]])
    blocks = ops.transpose(ops.reshape(padded, (batch, chunks, chunk_size, -1)), (1, 0, 2, 3))

    def energy(block, key):  # (batch, chunk_size, keys, units)
        return ops.tanh(ops.expand_dims(block, 2) + ops.expand_dims(key, 1))

    @ops.custom_gradient
    def scores_of(blocks, key, score_vector):
        scores = ops.map(lambda block: ops.einsum("bcsu,u->bcs", energy(block, key),
                                                  score_vector), blocks)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            upstream = ops.cast(upstream, "float32")  # (chunks, batch, chunk_size, keys)

            def block(i, carry):
                grad_blocks, grad_key, grad_vector = carry
                e = energy(blocks[i], key)
                g = upstream[i]
                grad_vector = grad_vector + ops.einsum("bcs,bcsu->u", g, e)
                d = ops.expand_dims(g, -1) * score_vector * (1.0 - e * e)
                grad_blocks = ops.slice_update(grad_blocks, (i, 0, 0, 0),
                                               ops.expand_dims(ops.sum(d, axis=2), 0))
                return grad_blocks, grad_key + ops.sum(d, axis=1), grad_vector

            return ops.fori_loop(0, chunks, block, (ops.zeros_like(blocks), ops.zeros_like(key),
                                                    ops.zeros_like(score_vector)))

        return scores, grad

    scores = scores_of(blocks, key, score_vector)  # (chunks, batch, chunk_size, keys)
    scores = ops.reshape(ops.transpose(scores, (1, 0, 2, 3)), (batch, chunks * chunk_size, -1))
    return scores[:, :queries]


PREFIX_BLOCK = 16  # positions per block of `prefix_softmax_context`


def prefix_softmax_context(scores, values, valid, block_size: int = PREFIX_BLOCK):
    """`context[b, t] = sum_{s <= t} softmax(scores[b, :t+1])[s] * values[b, s]` over the valid
    positions, in time and memory linear in the length: the causal attention of one query that
    is the same at every position (the learned query), never forming `(batch, length, length)`.

    `scores` `(batch, length)`, `values` `(batch, length, dim)`, `valid` bool `(batch, length)`;
    returns float32 `(batch, length, dim)`, zero where no valid position is at or before t.
    Positions are cut into blocks of `block_size`: inside a block the weights are a
    `(block, block)` triangle, across blocks each earlier block enters through its summary (its
    largest score, the sum of its exponentials and of its weighted values). Every exponent is a
    score minus the largest score up to the query, so nothing overflows and nothing that
    matters underflows: values and gradients equal the direct masked softmax to float32
    round-off (`tests/test_models.py`). At ML-1M's length 200 it holds `batch * length * 29`
    weights instead of `batch * length * 200`.

    Example:

    >>> values = ops.reshape(ops.arange(3.0), (1, 3, 1))
    >>> context = prefix_softmax_context(ops.zeros((1, 3)), values, ops.ones((1, 3), "bool"))
    >>> [round(float(x), 4) for x in context[0, :, 0]]  # running means of 0, 1, 2
    [0.0, 0.5, 1.0]
    """
    scores = ops.cast(scores, "float32")
    values = ops.cast(values, "float32")
    valid = ops.cast(valid, "bool")
    batch, length = ops.shape(scores)[0], ops.shape(scores)[1]
    dim = ops.shape(values)[-1]
    blocks = (length + block_size - 1) // block_size
    pad = blocks * block_size - length
    low = ops.cast(MASKED_SCORE, "float32")
    scores = ops.where(valid, scores, low)
    scores = ops.reshape(ops.pad(scores, [[0, 0], [0, pad]], constant_values=MASKED_SCORE),
                         (batch, blocks, block_size))
    present = ops.reshape(ops.pad(ops.cast(valid, "int32"), [[0, 0], [0, pad]]),
                          (batch, blocks, block_size)) > 0
    values = ops.reshape(ops.pad(values, [[0, 0], [0, pad], [0, 0]]),
                         (batch, blocks, block_size, dim))

    within = ops.tril(ops.ones((block_size, block_size), "bool"))  # s <= t inside a block
    before = ops.tril(ops.ones((blocks, blocks), "bool"), -1)  # block j < block i
    # The shifts cancel in the ratio, so no gradient flows through them.
    fixed = ops.stop_gradient(scores)
    block_max = ops.max(fixed, axis=-1)  # (batch, blocks)
    earlier_max = ops.max(ops.where(before, ops.expand_dims(block_max, 1), low), axis=-1)
    running_max = ops.max(ops.where(within, ops.expand_dims(fixed, 2), low), axis=-1)
    shift = ops.maximum(running_max, ops.expand_dims(earlier_max, -1))  # (batch, blocks, t)

    # Each exponent is chosen before `exp` (masked ones become `low`, whose exp is 0), so no
    # masked-out term can overflow and poison a gradient.
    # Inside the query's block: (batch, blocks, t, s).
    allowed = ops.logical_and(within, ops.expand_dims(present, 2))
    inner = ops.exp(ops.where(allowed, ops.expand_dims(scores, 2) - ops.expand_dims(shift, -1),
                              low))
    numerator = ops.matmul(inner, values)
    denominator = ops.sum(inner, axis=-1)
    # Earlier blocks through their summaries at their own maximum: (batch, blocks, dim), ...
    own = ops.exp(ops.where(present, scores - ops.expand_dims(block_max, -1), low))
    block_values = ops.einsum("bjs,bjsd->bjd", own, values)
    block_sums = ops.sum(own, axis=-1)
    # ... rescaled to each query's shift: (batch, blocks i, t, blocks j).
    across = ops.exp(ops.where(
        ops.expand_dims(before, 1),
        ops.expand_dims(ops.expand_dims(block_max, 1), 1) - ops.expand_dims(shift, -1), low))
    numerator = numerator + ops.einsum("bitj,bjd->bitd", across, block_values)
    denominator = denominator + ops.einsum("bitj,bj->bit", across, block_sums)
    # Queries with nothing before them divide by 1, not by a tiny number whose square would
    # underflow to a 0/0 in the division's gradient.
    some = ops.expand_dims(denominator > 0, -1)
    context = numerator / ops.where(some, ops.expand_dims(denominator, -1), 1.0)
    context = ops.where(some, context, 0.0)
    return ops.reshape(context, (batch, blocks * block_size, dim))[:, :length]


@keras.saving.register_keras_serializable(package="keras_seqrec")
class CausalBahdanauAttention(keras.layers.Layer):
    """Additive attention where position t attends to positions s <= t that are not padding.

    `score(t, s) = v^T tanh(W_q h_t + W_k h_s)`; weights are a softmax over the allowed `s`, and
    the context at `t` is the weighted sum of `h_s`. Rows of padded queries are all zero. The
    scores are computed `QUERY_BLOCK` queries at a time (`additive_scores`), so memory holds
    `batch * length^2` weights plus one `(batch, QUERY_BLOCK, length, units)` block, never the
    whole `batch * length^2 * units` tensor.

    Args:
        units: width of the additive scoring space.
        query: what asks the question at position t. `"position"`: the state there,
            `score(t, s) = v^T tanh(W_q h_t + W_k h_s)` (Bahdanau's form). `"learned"`: one
            trained vector q for every position, `score(s) = v^T tanh(q + W_k h_s)` (the global
            query of self-attentive pooling): position t still weighs only s <= t, but a key's
            score no longer depends on t, so the layer never forms the
            `(batch, length, length, units)` energies, and its context is a running softmax
            (`prefix_softmax_context`): time and memory linear in the length. The
            `(batch, length, length)` weights it also returns are computed only where they
            are used (a compiled graph drops them from training and scoring).

    Call arguments:
        inputs: hidden states `(batch, length, dim)`: the queries, and the keys and values
            unless `memory` is given.
        padding_mask: bool `(batch, length)`, True at real items. None means no padding (or
            the Keras mask attached to `inputs`, when there is one).
        last_only: attend from the last position only, the one that ranking and serving
            score: the same values as the last row of the full call, at `1 / length` of the
            cost.
        memory: optional `(batch, length, memory_dim)`, aligned with `inputs`, that supplies
            the keys and values instead of `inputs` (e.g. the input item embeddings, so that
            the state at t attends to the items seen up to t).

    Returns:
        `(context, weights)`: `(batch, queries, dim)` (`memory_dim` with `memory`) and
        `(batch, queries, length)` where `weights[b, t, s]` is the attention of query t on
        position s; `queries` is `length`, or 1 with `last_only`.

    Example:

    >>> layer = CausalBahdanauAttention(units=8)
    >>> context, weights = layer(ops.ones((2, 5, 4)))
    >>> tuple(context.shape), tuple(weights.shape)
    ((2, 5, 4), (2, 5, 5))

    Reference:
        Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly Learning to Align and
        Translate", ICLR 2015.
    """

    def __init__(self, units: int = 64, query: str = "position", **kwargs):
        super().__init__(**kwargs)
        if query not in QUERIES:
            raise ValueError(f"`query` must be one of {QUERIES}; got {query!r}.")
        self.units = int(units)
        self.query = query
        if query == "position":
            self.query_dense = keras.layers.Dense(self.units, use_bias=False, name="query")
        self.key_dense = keras.layers.Dense(self.units, use_bias=True, name="key")
        self.score_dense = keras.layers.Dense(1, use_bias=False, name="score")

    def build(self, inputs_shape, padding_mask_shape=None, memory_shape=None):
        if self.query == "position":
            self.query_dense.build(inputs_shape)
        else:
            # Zeros, like the key's bias it adds to: the start is the same as a bias-only key.
            self.learned_query = self.add_weight(shape=(self.units,), initializer="zeros",
                                                 name="learned_query")
        key_shape = inputs_shape if memory_shape is None else memory_shape
        self.key_dense.build(key_shape)
        self.score_dense.build(tuple(key_shape[:-1]) + (self.units,))
        self.built = True

    def _scores(self, inputs, memory, last_only):
        """Float32 scores `(batch, queries, length)` before masking; with the learned query,
        `(batch, 1, length)`, the same row for every query."""
        key = self.key_dense(memory)  # (batch, s, units)
        vector = self.score_dense.kernel[:, 0]
        if self.query == "learned":
            energy = ops.tanh(ops.cast(key, "float32") + ops.cast(self.learned_query, "float32"))
            return ops.expand_dims(ops.einsum("bsu,u->bs", energy, ops.cast(vector, "float32")),
                                   1)
        query = self.query_dense(inputs[:, -1:, :] if last_only else inputs)  # (batch, t, units)
        # One query (last_only) is one block of one: no padding to a block of 16.
        return additive_scores(query, key, vector, chunk_size=1 if last_only else QUERY_BLOCK)

    def call(self, inputs, padding_mask=None, mask=None, last_only=False, memory=None):
        if padding_mask is None:
            padding_mask = mask
        if memory is None:
            memory = inputs
        length = ops.shape(inputs)[1]
        positions = ops.arange(length)
        query_positions = positions[-1:] if last_only else positions
        scores = self._scores(inputs, memory, last_only)
        allowed = ops.expand_dims(query_positions, 1) >= ops.expand_dims(positions, 0)  # s <= t
        allowed = ops.expand_dims(allowed, 0)
        real = None if padding_mask is None else ops.cast(padding_mask, "bool")
        if real is not None:
            real_query = real[:, -1:] if last_only else real
            allowed = ops.logical_and(allowed, ops.expand_dims(real, 1))  # key is real
            allowed = ops.logical_and(allowed, ops.expand_dims(real_query, 2))  # query is real
        masked = ops.where(allowed, scores, ops.cast(MASKED_SCORE, "float32"))
        weights = ops.softmax(masked, axis=-1)
        weights = ops.where(allowed, weights, ops.zeros_like(weights))
        if self.query == "learned" and not last_only:
            # The same scores for every query: running sums instead of the (length, length)
            # weights, which a compiled graph then computes only where they are used
            # (explanations), not for training or scoring.
            if real is None:
                real = ops.ones((ops.shape(inputs)[0], length), "bool")
            context = prefix_softmax_context(scores[:, 0, :], memory, real)
            context = ops.where(ops.expand_dims(real, -1), context, 0.0)
            return ops.cast(context, memory.dtype), weights
        context = ops.matmul(ops.cast(weights, memory.dtype), memory)
        return context, weights

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_spec(self, inputs, padding_mask=None, mask=None, last_only=False,
                            memory=None):
        batch, length, _ = inputs.shape
        values = inputs if memory is None else memory
        queries = 1 if last_only else length
        return (
            keras.KerasTensor((batch, queries, values.shape[-1]), dtype=values.dtype),
            keras.KerasTensor((batch, queries, length), dtype="float32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, query=self.query)
        return config
