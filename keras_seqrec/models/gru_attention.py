"""`gru_attention`: stacked GRU with causal Bahdanau attention over its states."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
from keras import layers

from keras_seqrec.layers import CausalBahdanauAttention, LastPosition
from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.models import common
from keras_seqrec.models.recurrent import recurrent_states
from keras_seqrec.models.registry import register_model

ATTENTION = "attention"
STATES = "gru_states"
MEMORY = "attention_memory"  # the item vectors attended to, with attend_to="items"
DECODERS = ("tanh", "linear", "residual")
ATTEND_TO = ("states", "items")


def _decode(states, context, decoder: str, embedding_dim: int, model=None):
    """The decoder's layers on `(states, context)`: new layers, or `model`'s by name."""
    def layer(name, make):
        return model.get_layer(name) if model is not None else make()

    if decoder == "residual":
        if context is None:
            return states
        hidden_dim = states.shape[-1]
        projected = layer("context_projection", lambda: layers.Dense(
            hidden_dim, use_bias=False, kernel_initializer="zeros",
            name="context_projection"))(context)
        return layer("state_plus_context",
                     lambda: layers.Add(name="state_plus_context"))([states, projected])
    if context is not None:
        states = layer("state_and_context",
                       lambda: layers.Concatenate(name="state_and_context"))([states, context])
    activation = "tanh" if decoder == "tanh" else None
    return layer("attentional_state", lambda: layers.Dense(
        embedding_dim, activation=activation, name="attentional_state"))(states)


@register_model("gru_attention")
def gru_attention(
    num_items: int,
    max_len: int,
    embedding_dim: int = 64,
    hidden_dim: int = 64,
    num_layers: int = 2,
    attention_units: int = 64,
    query: str = "learned",
    decoder: str = "residual",
    attend_to: str = "items",
    use_attention: bool = True,
    dropout: float = 0.2,
    embedding_dropout: Optional[float] = None,
    output_dropout: Optional[float] = None,
    context_dropout: Optional[float] = None,
    residual: bool = True,
    tie_embeddings: bool = True,
    item_embeddings: Optional[np.ndarray] = None,
    freeze_item_embeddings: bool = False,
    item_features: Optional[ItemFeatures] = None,
    id_embedding: bool = True,
    id_dropout: float = 0.0,
) -> keras.Model:
    """Stacked GRU + causal Bahdanau (additive) attention, then scores over the catalogue.

    At each position t the attention layer weighs the items of positions <= t (their input
    vectors; `attend_to="states"`: the GRU states there) into a context vector `c_t`; by
    default the vector scored against the items is `h_t + W c_t`, with `W` starting at zero,
    so the model starts as the plain GRU and the attention adds what it is worth, and the
    query is one learned vector, so the attention costs `batch * length * units` instead of
    `batch * length^2 * units`. The ablation behind these defaults is `benchmarks/ABLATION.md`;
    `attend_to="states", query="position", decoder="tanh"` is the earlier model (each state
    queries the states, `tanh(W [h_t; c_t])` is scored). `attention_weights_model(model)`
    returns the weights for explanations.

    Args:
        num_items: catalogue size without padding.
        max_len: input length (left-padded item indices).
        embedding_dim: item vector width (taken from `item_embeddings` when given).
        hidden_dim: GRU state width.
        num_layers: stacked GRU layers.
        attention_units: width of the additive scoring space.
        query: `"position"`: position t's own state is the query (Bahdanau's form, cost
            `batch * length^2 * attention_units`); `"learned"`: one trained query vector for
            every position (cost `batch * length * attention_units`); see
            `CausalBahdanauAttention`.
        decoder: how the state `h_t` and the context `c_t` become the vector scored against
            the items. `"tanh"`: `tanh(W [h_t; c_t])` (Luong's attentional state);
            `"linear"`: `W [h_t; c_t]`, NARM's bilinear decoder `e_i^T B [c_t; h_t]` written as
            a projection; `"residual"`: `h_t + W c_t` with `W` starting at zero, so the model
            starts as the plain GRU and the attention adds what it is worth.
        attend_to: what the attention weighs into the context. `"items"`: the input item
            vectors `e_s`, s <= t (after the embedding dropout), so the context is a weighted
            bag of the items seen so far beside the state's recency-ordered summary of them;
            `"states"`: the GRU states `h_s`, s <= t (Bahdanau's and NARM's form). Items
            scored higher on validation on Amazon Beauty, ml-latest-small and ml-100k
            (`benchmarks/ABLATION.md`).
        use_attention: False drops the attention (the context is zero), for ablations: the
            decoder then reads `h_t` alone.
        dropout: drop rate after each GRU layer and on the attentional state before scoring
            (and after the embedding unless `embedding_dropout` is given).
        embedding_dropout: drop rate on the input item embeddings; `None` uses `dropout`. Set
            it when the embedding table needs more regularisation than the recurrent stack.
        output_dropout: drop rate on the decoder's output before scoring; `None` uses
            `dropout`. The last GRU layer's states are already dropped at `dropout`, so the
            state path is dropped twice unless this is 0.
        context_dropout: drop rate on the context vector before the decoder; `None` uses
            `dropout`. The context averages many dropped-out states, so without its own
            dropout it is a nearly noise-free path around the states' dropout, and the model
            leans on it and overfits (on Amazon Beauty 0 cost 0.005 validation NDCG@10 against
            the same model without attention; `benchmarks/ABLATION.md`).
        residual: from the second GRU layer on, add each layer's input to its output
            (`x + dropout(gru(x))`), so the stack can fall back to what one layer gives. It
            scored higher on validation on ml-latest-small, ml-100k and Amazon Beauty than the
            plain stack that `False` gives.
        tie_embeddings: score with the item embedding itself, else a separate dense layer.
        item_embeddings: optional `(num_items + 1, dim)` starting matrix (item2vec).
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
        `(batch, min(length, max_len), num_items + 1)`.

    Example:

    >>> from keras_seqrec import build_model
    >>> model = build_model("gru_attention", num_items=50, max_len=10)
    >>> attention_weights_model(model).output_shape
    (None, None, None)

    Reference:
        Bahdanau et al., ICLR 2015; Li et al., "Neural Attentive Session-based Recommendation"
        (NARM), CIKM 2017.
    """
    common.validate_common(dropout=dropout, num_layers=num_layers,
                           embedding_dropout=embedding_dropout, output_dropout=output_dropout,
                           context_dropout=context_dropout)
    if decoder not in DECODERS:
        raise ValueError(f"`decoder` must be one of {DECODERS}; got {decoder!r}.")
    if attend_to not in ATTEND_TO:
        raise ValueError(f"`attend_to` must be one of {ATTEND_TO}; got {attend_to!r}.")
    if embedding_dropout is None:
        embedding_dropout = dropout
    if output_dropout is None:
        output_dropout = dropout
    if context_dropout is None:
        context_dropout = dropout
    embedding_dim = common.check_item_embeddings(item_embeddings, num_items, embedding_dim)

    # Inputs.
    item_ids, ids = common.item_input(max_len)
    mask = common.padding_mask(ids)

    # Layers and graph.
    embedding = common.item_embedding(num_items, embedding_dim, item_features=item_features,
                                      id_embedding=id_embedding, id_dropout=id_dropout)
    x = layers.Dropout(embedding_dropout, name="embedding_dropout")(embedding(ids))
    states = recurrent_states(x, mask, "gru", hidden_dim, num_layers, dropout, residual)
    states = layers.Identity(name=STATES)(states)
    context = None
    if use_attention:
        memory = layers.Identity(name=MEMORY)(x) if attend_to == "items" else None
        context, _ = CausalBahdanauAttention(attention_units, query=query, name=ATTENTION)(
            states, padding_mask=mask, memory=memory
        )
        # Inactive at inference, so the last-position graph below leaves it out.
        context = layers.Dropout(context_dropout, name="context_dropout")(context)
    x = _decode(states, context, decoder, embedding_dim)
    x = layers.Dropout(output_dropout, name="output_dropout")(x)
    logits = common.output_head(x, embedding, tie_embeddings, num_items)

    model = keras.Model(item_ids, logits, name="gru_attention")
    return common.finish(model, item_embeddings, freeze_item_embeddings, item_features)


@common.register_last_position_graph
def _last_position_hidden(model: keras.Model):
    """The last position's `sequence_output` of a gru_attention model, attending from that
    position only (what ranking and serving need); None for any other model."""
    names = {layer.name for layer in model.layers}
    if not {ATTENTION, "output_dropout"} <= names:
        return None
    attention = model.get_layer(ATTENTION)
    if not isinstance(attention, CausalBahdanauAttention):
        return None
    # Every position's GRU state, (batch, length, hidden); models saved before the states
    # layer was named keep them as the first input of the concatenation.
    states = (model.get_layer(STATES).output if STATES in names
              else model.get_layer("state_and_context").input[0])
    context, _ = attention(states, padding_mask=model.get_layer("padding_mask").output,
                           last_only=True, memory=attention_memory(model))
    # Reused layers carry their own activation, so "tanh" stands for "linear" too.
    decoder = "residual" if "state_plus_context" in names else "tanh"
    x = _decode(LastPosition(name="last_state")(states),
                LastPosition(name="last_context")(context), decoder, None, model=model)
    for name in ("output_dropout", "output_projection", common.SEQUENCE_OUTPUT):
        if name in names:
            x = model.get_layer(name)(x)
    return x


def attention_layer(model: keras.Model):
    """The `CausalBahdanauAttention` of a gru_attention model that names its GRU states
    (`gru_states`, every model built since that layer was named); None for any other model."""
    names = {layer.name for layer in model.layers}
    if not {ATTENTION, STATES} <= names:
        return None
    layer = model.get_layer(ATTENTION)
    return layer if isinstance(layer, CausalBahdanauAttention) else None


def attention_memory(model: keras.Model):
    """The item vectors a gru_attention model built with `attend_to="items"` attends to
    (a symbolic tensor of the model's graph); None when it attends to its GRU states."""
    names = {layer.name for layer in model.layers}
    return model.get_layer(MEMORY).output if MEMORY in names else None


def attention_weights_model(model: keras.Model) -> keras.Model:
    """`(batch, length)` -> attention weights `(batch, length, length)` of a `gru_attention`.

    `weights[b, t, s]` is how much position t attends to position s (0 for s > t and padding).
    """
    try:
        layer = model.get_layer(ATTENTION)
    except ValueError:
        raise ValueError(
            f"Model {model.name!r} has no '{ATTENTION}' layer; attention weights exist only "
            "for gru_attention models."
        ) from None
    return keras.Model(common.single_input(model), layer.output[1],
                       name=f"{model.name}_attention")
