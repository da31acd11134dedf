"""One event at a time: a recurrent model's session state and its constant-time update.

A server that keeps each live session's state only has to read the newest event, instead of
running the model over the whole history on every request. `RecurrentSession(model)` does that
for the recurrent zoo models (`rnn`, `lstm`, `gru`, `gru_w2v`, `gru4rec`) and for
`gru_attention` with its default learned query, whose attention context is kept as a running
softmax (its key scores do not depend on the position that asks, so the weighted sum of states
can be updated in place).

The state is one float32 vector per session: each recurrent layer's cell state, the number of
known events, and for `gru_attention` the running maximum, denominator and numerator of the
attention softmax. All zeros is the empty session. For a session of up to `max_len` events, the
scores after each event equal the full-history scores of `last_position_model` (tested to
1e-5); a longer session keeps reading all of it, where the full-history model reads its last
`max_len` items.

Not supported, and why:
- `sasrec`: its positions count back from the most recent item (the newest is always at
  position `max_len - 1`), so every event moves every earlier item to another position and
  changes every key and value of every block; there is no cache to reuse, and one event costs
  a full forward pass.
- `gru_attention` with `query="position"`: each position asks its own question, so the weights
  of all earlier states change with every event and the state would be the whole history.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_seqrec.models import common
from keras_seqrec.models.gru_attention import _decode, attention_layer, attention_memory

_CELLS = ("gru", "lstm", "rnn")


def _cell_sizes(cell) -> list[int]:
    size = cell.state_size
    return [int(s) for s in size] if isinstance(size, (list, tuple)) else [int(size)]


class RecurrentSession:
    """The constant-time session update of a recurrent zoo model (sharing its weights).

    Args:
        model: an `rnn`, `lstm`, `gru`, `gru_w2v`, `gru4rec` or `gru_attention` (learned
            query) model.

    Raises:
        ValueError: any other model, with the reason it has no constant-size state.

    Example:

    >>> import numpy as np
    >>> from keras_seqrec import build_model
    >>> model = build_model("gru", num_items=20, max_len=5, embedding_dim=8, hidden_dim=8)
    >>> session = RecurrentSession(model)
    >>> state = session.initial_state(1)
    >>> for item in [3, 7, 2]:
    ...     state, logits = session.step(state, np.array([item]))
    >>> full = common.last_position_model(model).predict_on_batch(np.array([[0, 0, 3, 7, 2]]))
    >>> bool(np.allclose(logits, full, atol=1e-5))
    True
    """

    def __init__(self, model: keras.Model):
        layers = {layer.name: layer for layer in model.layers}
        if any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in model.layers):
            raise ValueError(
                f"{model.name!r} is a self-attention model: its positions count back from the "
                "newest item, so every event changes every earlier key and value and there is "
                "no state to carry; serve it with the full-history signature.")
        cell = next((c for c in _CELLS if f"{c}_0" in layers), None)
        if cell is None:
            raise ValueError(f"{model.name!r} has no recurrent layers "
                             f"({', '.join(c + '_0' for c in _CELLS)}); only recurrent "
                             "models have a one-event session state.")
        self.model = model
        self.max_len = common.model_max_len(model)
        self.embedding = layers["item_embedding"]
        self.recurrent = []
        i = 0
        while f"{cell}_{i}" in layers:
            self.recurrent.append((layers[f"{cell}_{i}"].cell, f"{cell}_{i}_residual" in layers))
            i += 1
        self.attention = attention_layer(model)
        if self.attention is not None and self.attention.query != "learned":
            raise ValueError(
                "gru_attention with query='position' has no constant-size session state: each "
                "position asks its own question, so every event re-weighs all earlier states. "
                "Build it with query='learned' (the default) for one-event serving.")
        self.decoder = "residual" if "state_plus_context" in layers else "tanh"
        self.hidden_dim = _cell_sizes(self.recurrent[-1][0])[0]
        self._sizes = [_cell_sizes(c) for c, _ in self.recurrent]
        self.head, self.tied = common.output_layer(model)
        self.layers = layers
        self.state_size = sum(sum(s) for s in self._sizes) + 1
        # With attend_to="items" the attention averages the input item vectors, else the states.
        memory = attention_memory(model)
        self.attend_items = memory is not None
        if self.attention is not None:
            self.state_size += 2 + (memory.shape[-1] if self.attend_items else self.hidden_dim)

    def events(self, state):
        """The number of known events each session has read, `(batch,)`."""
        return state[:, sum(sum(s) for s in self._sizes)]

    def initial_state(self, batch_size: int):
        """The empty sessions' state, float32 `(batch_size, state_size)` zeros."""
        return ops.zeros((batch_size, self.state_size), "float32")

    def _split(self, state):
        parts, start = [], 0
        for sizes in self._sizes:
            layer = []
            for size in sizes:
                layer.append(state[:, start:start + size])
                start += size
            parts.append(layer)
        events = state[:, start:start + 1]
        start += 1
        attention = None
        if self.attention is not None:
            attention = (state[:, start:start + 1], state[:, start + 1:start + 2],
                         state[:, start + 2:])
        return parts, events, attention

    def step(self, state, items):
        """Read one event per session: `(state, items)` -> `(new_state, logits)`.

        `items` int `(batch,)` item indices; 0 (padding, or an id the vocabulary does not know)
        leaves that session unchanged. `logits` `(batch, num_items + 1)` are the scores after
        the event, as `last_position_model` gives for the whole history (its padding column
        masked); for a session with no known event they are the scores of a zero state.
        """
        state = ops.cast(state, "float32")
        items = ops.cast(items, "int32")
        known = ops.expand_dims(ops.not_equal(items, 0), -1)  # (batch, 1)
        parts, events, attention = self._split(state)
        x = ops.squeeze(self.embedding(ops.expand_dims(items, -1)), 1)
        item_vector = x
        new_parts = []
        for (cell, residual), old in zip(self.recurrent, parts):
            _, new = cell(x, list(old), training=False)
            new = new if isinstance(new, (list, tuple)) else [new]
            new = [ops.where(known, ops.cast(n, "float32"), o) for n, o in zip(new, old)]
            new_parts.extend(new)
            # The layer's output is its state h (the first state of an LSTM's (h, c)); after
            # an unknown event it is the kept one, and a residual stack's output, the sum of
            # its layers' outputs, needs nothing else.
            out = ops.cast(new[0], x.dtype)
            x = x + out if residual else out
        events = events + ops.cast(known, "float32")
        hidden = x
        new_attention = []
        if self.attention is not None:
            top, total, weighted = attention
            layer = self.attention
            value = item_vector if self.attend_items else hidden
            key = ops.cast(layer.key_dense(value), "float32")
            vector = ops.cast(layer.score_dense.kernel[:, 0], "float32")
            score = ops.sum(ops.tanh(key + ops.cast(layer.learned_query, "float32")) * vector,
                            axis=-1, keepdims=True)  # (batch, 1)
            first = ops.equal(events, 1.0)
            new_top = ops.where(first, score, ops.maximum(top, score))
            decay = ops.where(first, 0.0, ops.exp(top - new_top))
            fresh = ops.exp(score - new_top)
            new_total = total * decay + fresh
            new_weighted = weighted * decay + fresh * ops.cast(value, "float32")
            new_attention = [ops.where(known, new_top, top), ops.where(known, new_total, total),
                             ops.where(known, new_weighted, weighted)]
            top, total, weighted = new_attention
            context = ops.where(total > 0, weighted / ops.maximum(total, 1e-30), 0.0)
            hidden = _decode(hidden, ops.cast(context, hidden.dtype), self.decoder, None,
                             model=self.model)
        for name in ("output_projection", common.SEQUENCE_OUTPUT):
            if name in self.layers:
                hidden = self.layers[name](hidden)
        logits = self.head(hidden, reverse=True) if self.tied else self.head(hidden)
        new_state = ops.concatenate(new_parts + [events] + new_attention, axis=-1)
        return new_state, ops.cast(logits, "float32")
