"""The model battery, run on every registered model, plus the attention layer and item2vec."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_seqrec as ks
from keras_seqrec.models import attention_weights_model, hyperparameters
from keras_seqrec.testing import (
    MODEL_CHECKS,
    check_model,
    sample_batch,
    small_builder,
    synthetic_item_features,
)

NUM_ITEMS, MAX_LEN = 30, 8


def small_model(name, num_items=NUM_ITEMS, max_len=MAX_LEN, **overrides):
    """Every model, small (the battery's sizes; dropout at the model's default)."""
    if "dropout" in hyperparameters(name):
        overrides.setdefault("dropout", hyperparameters(name)["dropout"])
    return small_builder(name)(num_items, max_len, **overrides)


batch = sample_batch
MODELS = ks.available_models()
# Every model with its defaults, plus the architecture switches the defaults leave off, through
# the checks of the zoo's contract; the costlier training checks run on the defaults only.
VARIANTS = [(name, {}) for name in MODELS] + [
    ("sasrec", {"normalized_residual": True}), ("sasrec", {"ffn_dim": 64}),
    ("gru_attention", {"attend_to": "states", "query": "position", "decoder": "tanh"}),
    ("gru_attention", {"decoder": "linear"}), ("gru_attention", {"use_attention": False}),
    ("gru_attention", {"attend_to": "states"}),
    ("gru_attention", {"query": "position", "embedding_dim": 6})]
# Feature-aware items (ids + features, and features only) reach every kind of model; they go
# through the contract and the training checks (every feature table trains).
FEATURES = {"item_features": synthetic_item_features}
FEATURE_VARIANTS = [(name, FEATURES) for name in ("gru", "gru_attention", "gru4rec", "sasrec")
                    ] + [("gru", {**FEATURES, "id_embedding": False}),
                         ("sasrec", {**FEATURES, "id_dropout": 0.5})]
CONTRACT = ["causal", "trimmed_padding_and_long_inputs", "last_position_model",
            "keras_file_round_trip"]
FEATURE_CHECKS = CONTRACT + ["training_reduces_the_loss", "mixed_bfloat16"]


def _variants(check):
    plain = VARIANTS if check in CONTRACT else [(n, {}) for n in MODELS]
    return plain + (FEATURE_VARIANTS if check in FEATURE_CHECKS else [])


BATTERY = [
    pytest.param(check, name, options,
                 id=f"{check}-{name}" + "".join(f"-{k}" for k in options))
    for check in MODEL_CHECKS
    for name, options in _variants(check)
]


@pytest.mark.parametrize("check, name, options", BATTERY)
def test_model_battery(check, name, options):
    check_model(name, checks=[check], **options)


def test_the_battery_catches_a_model_that_sees_the_future():
    # A model of one's own, written on the zoo's parts, with one mistake: every position also
    # reads the mean of the whole sequence.
    from keras_seqrec.models import common

    def leaky(num_items, max_len, embedding_dim=16):
        item_ids, x = common.item_input(max_len)
        embedding = common.item_embedding(num_items, embedding_dim)
        h = embedding(x)
        whole = keras.layers.GlobalAveragePooling1D(keepdims=True)(h)
        h = keras.layers.Add()([h, whole])
        return keras.Model(item_ids, common.output_head(h, embedding, True, num_items))

    assert check_model(leaky, checks=["output_shape_and_padding"]) == [
        "output_shape_and_padding"]
    with pytest.raises(AssertionError, match=r"(?s)^causal failed for leaky: .*sees items after"):
        check_model(leaky, checks=["causal"])
    with pytest.raises(ValueError, match="Unknown checks"):
        check_model("gru", checks=["nope"])


def test_sasrec_ffn_dim_sets_the_inner_width_only():
    wide = small_model("sasrec", ffn_dim=64)
    assert wide.get_layer("block_1_ffn_1").units == 64
    assert wide.get_layer("block_1_ffn_2").units == 16  # back to embedding_dim
    assert small_model("sasrec").get_layer("block_1_ffn_1").units == 16  # the paper's default
    with pytest.raises(ValueError, match="`ffn_dim` must be a positive width; got 0"):
        small_model("sasrec", ffn_dim=0)


def test_sasrec_normalized_residual_changes_what_the_blocks_add_to():
    # Same weights, same layer names: only the residual's source differs.
    default = small_model("sasrec")
    original = small_model("sasrec", normalized_residual=True)
    original.set_weights(default.get_weights())
    x = batch()
    assert not np.allclose(
        ops.convert_to_numpy(default(x, training=False)),
        ops.convert_to_numpy(original(x, training=False)),
        atol=1e-3,
    )
    # Zeroing the attention and feed-forward outputs leaves each block its residual alone: the
    # un-normalised stream in the default, the layer-normalised one in the original.
    for model in (default, original):
        for layer in model.layers:
            if layer.name.endswith(("_attention", "_ffn_2")):
                layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    for model, normalised in ((default, False), (original, True)):
        outputs = [model.get_layer("embedding_mask").output,
                   model.get_layer("block_0_attention_residual").output]
        probe = keras.Model(model.inputs[0], outputs)
        embedded, residual = (ops.convert_to_numpy(t) for t in probe(x, training=False))
        if normalised:
            norm = model.get_layer("block_0_attention_norm")
            embedded = ops.convert_to_numpy(norm(embedded))
        np.testing.assert_allclose(residual, embedded, rtol=1e-5, atol=1e-5)


def test_unknown_model_and_hyperparameter_errors():
    with pytest.raises(ValueError, match=r"Available models: .*gru_attention.*Did you mean 'gru'"):
        ks.build_model("gur", 10, 5)
    with pytest.raises(ValueError, match=r"'hiden_dim' \(did you mean 'hidden_dim'\?\)"):
        ks.build_model("gru", 10, 5, hiden_dim=3)
    with pytest.raises(ValueError, match="gru_w2v needs `item_embeddings`"):
        ks.build_model("gru_w2v", 10, 5, item_embeddings=None)
    with pytest.raises(ValueError, match="already registered"):
        ks.models.register_model("gru")(lambda num_items, max_len: None)


@pytest.mark.parametrize("query", ["position", "learned"])
def test_attention_from_the_last_position_only_is_the_last_row_of_the_full_call(query):
    layer = ks.layers.CausalBahdanauAttention(units=8, query=query)
    states = np.random.default_rng(0).normal(size=(3, 6, 4)).astype("float32")
    mask = np.array([[0, 0, 1, 1, 1, 1], [1] * 6, [0] * 6], bool)  # left padding, none, all
    context, weights = (ops.convert_to_numpy(t) for t in layer(states, padding_mask=mask))
    last_context, last_weights = (ops.convert_to_numpy(t) for t in
                                  layer(states, padding_mask=mask, last_only=True))
    assert last_context.shape == (3, 1, 4) and last_weights.shape == (3, 1, 6)
    np.testing.assert_allclose(last_context[:, 0], context[:, -1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(last_weights[:, 0], weights[:, -1], rtol=1e-6, atol=1e-6)
    assert np.all(last_weights[2] == 0.0) and np.all(last_weights[0, 0, :2] == 0.0)


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 16])
def test_additive_scores_in_blocks_equal_the_direct_tensor_with_gradients(chunk_size):
    import tensorflow as tf

    from keras_seqrec.layers.bahdanau_attention import additive_scores

    rng = np.random.default_rng(0)
    query, key = (tf.constant(rng.normal(size=(2, n, 5)), "float32") for n in (11, 7))
    vector = tf.constant(rng.normal(size=(5,)), "float32")
    weights = tf.constant(rng.normal(size=(2, 11, 7)), "float32")  # a loss that mixes scores
    results = []
    for direct in (True, False):
        with tf.GradientTape() as tape:
            tape.watch([query, key, vector])
            if direct:
                scores = tf.einsum("btsu,u->bts", tf.tanh(query[:, :, None] + key[:, None]),
                                   vector)
            else:
                scores = additive_scores(query, key, vector, chunk_size=chunk_size)
            loss = tf.reduce_sum(scores * weights)
        results.append([scores] + tape.gradient(loss, [query, key, vector]))
    for want, got in zip(*results):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block_size", [1, 4, 16, 64])
def test_prefix_softmax_context_equals_the_masked_softmax_with_gradients(block_size):
    import tensorflow as tf

    from keras_seqrec.layers.bahdanau_attention import prefix_softmax_context

    rng = np.random.default_rng(0)
    batch, length, dim = 3, 37, 5
    # Scores 200 apart: a shift by anything but each query's own running maximum would overflow
    # or wipe out the early positions' weights.
    scores = tf.constant(rng.normal(size=(batch, length)) * 60, "float32")
    values = tf.constant(rng.normal(size=(batch, length, dim)), "float32")
    valid = np.ones((batch, length), bool)
    valid[0, :9] = False  # left padding
    valid[1, 20] = False  # a hole
    valid[2] = False  # nothing at all
    mix = tf.constant(rng.normal(size=(batch, length, dim)), "float32")
    allowed = np.tril(np.ones((length, length), bool))[None] & valid[:, None, :]
    results = []
    for direct in (True, False):
        with tf.GradientTape() as tape:
            tape.watch([scores, values])
            if direct:
                masked = tf.where(allowed, scores[:, None, :], -1e9)
                weights = tf.where(allowed, tf.nn.softmax(masked, axis=-1), 0.0)
                context = weights @ values
            else:
                context = prefix_softmax_context(scores, values, valid, block_size=block_size)
            loss = tf.reduce_sum(context * mix)
        results.append([context] + tape.gradient(loss, [scores, values]))
    for want, got in zip(*results):
        assert np.all(np.isfinite(got.numpy()))
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    assert np.all(results[1][0].numpy()[2] == 0.0)  # no valid position: zero context


@pytest.mark.parametrize("query", ["position", "learned"])
@pytest.mark.parametrize("with_memory", [False, True])
def test_attention_layer_equals_the_additive_formula_written_out_in_numpy(query, with_memory):
    layer = ks.layers.CausalBahdanauAttention(units=8, query=query)
    rng = np.random.default_rng(1)
    states = rng.normal(size=(2, 13, 4)).astype("float32")
    # Keys and values from a memory of another width (the items attended to), or the states.
    memory = rng.normal(size=(2, 13, 3)).astype("float32") if with_memory else None
    values = memory if with_memory else states
    mask = np.ones((2, 13), bool)
    mask[0, :5] = False
    layer.build(states.shape, memory_shape=None if memory is None else memory.shape)
    if query == "learned":  # not the zeros it starts from, so the test sees the query's role
        layer.learned_query.assign(rng.normal(size=(8,)).astype("float32"))
        asked = np.broadcast_to(layer.learned_query.numpy(), (2, 13, 8))
    else:
        asked = states @ layer.query_dense.get_weights()[0]
    context, weights = (ops.convert_to_numpy(t) for t in
                        layer(states, padding_mask=mask, memory=memory))
    w_key, b_key = layer.key_dense.get_weights()
    v, = layer.score_dense.get_weights()
    scores = np.tanh(asked[:, :, None] + (values @ w_key + b_key)[:, None]) @ v
    allowed = np.tril(np.ones((13, 13), bool))[None] & mask[:, None, :] & mask[:, :, None]
    scores = np.where(allowed, scores[..., 0], -np.inf)
    want = np.exp(scores - scores.max(-1, keepdims=True).clip(-1e30))
    want = np.nan_to_num(want / want.sum(-1, keepdims=True))
    np.testing.assert_allclose(weights, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, want @ values, rtol=1e-5, atol=1e-5)


def test_attention_weights_are_causal_and_ignore_padding():
    model = small_model("gru_attention")
    x = batch()
    weights = ops.convert_to_numpy(attention_weights_model(model)(x))  # (batch, t, s)
    real = x != 0
    for b in range(len(x)):
        for t in range(MAX_LEN):
            allowed = real[b] & (np.arange(MAX_LEN) <= t)
            if real[b, t]:
                assert weights[b, t, allowed].sum() == pytest.approx(1.0, abs=1e-5)
            else:
                assert weights[b, t].sum() == 0.0
            assert np.all(weights[b, t, ~allowed] == 0.0)


def test_gru_attention_embedding_and_output_dropout_are_separate_and_default_to_dropout():
    def rates(model):
        return {layer.name: layer.rate for layer in model.layers
                if isinstance(layer, keras.layers.Dropout)}

    shared = rates(small_model("gru_attention", dropout=0.3))
    assert set(shared.values()) == {0.3} and "embedding_dropout" in shared
    split = rates(small_model("gru_attention", dropout=0.3, embedding_dropout=0.6))
    assert split.pop("embedding_dropout") == 0.6
    assert set(split.values()) == {0.3} and len(split) == len(shared) - 1
    with pytest.raises(ValueError, match=r"`embedding_dropout` is a drop rate in \[0, 1\)"):
        small_model("gru_attention", embedding_dropout=1.0)
    assert rates(small_model("gru_attention", dropout=0.3, output_dropout=0.0))[
        "output_dropout"] == 0.0
    with pytest.raises(ValueError, match=r"`output_dropout` is a drop rate in \[0, 1\)"):
        small_model("gru_attention", output_dropout=-0.1)


def test_gru_attention_residual_stack_adds_each_later_layer_to_its_input():
    model = small_model("gru_attention", num_layers=3)  # residual by default
    names = {layer.name for layer in model.layers}
    assert {"gru_1_residual", "gru_2_residual"} <= names and "gru_0_residual" not in names
    # A GRU whose weights are all zero outputs zeros, so the residual stack must pass the
    # first layer's states through unchanged.
    for name in ("gru_1", "gru_2"):
        layer = model.get_layer(name)
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    probe = keras.Model(model.inputs, [model.get_layer("gru_0_dropout").output,
                                       model.get_layer("gru_2_residual").output])
    first, last = (ops.convert_to_numpy(t) for t in probe(batch()))
    assert np.abs(first).max() > 0
    np.testing.assert_allclose(last, first, atol=1e-6)
    plain = small_model("gru_attention", num_layers=3, residual=False)
    assert not any(layer.name.endswith("_residual") for layer in plain.layers)


def test_attention_layer_round_trips_its_config():
    layer = ks.layers.CausalBahdanauAttention(units=5, query="learned", name="att")
    clone = ks.layers.CausalBahdanauAttention.from_config(layer.get_config())
    assert clone.units == 5 and clone.name == "att" and clone.query == "learned"
    with pytest.raises(ValueError, match=r"`query` must be one of \('position', 'learned'\)"):
        ks.layers.CausalBahdanauAttention(units=5, query="last")


def test_gru_attention_residual_decoder_starts_as_the_plain_gru_and_learns_to_add_context():
    model = small_model("gru_attention", embedding_dim=16, hidden_dim=16)  # the default decoder
    probe = keras.Model(model.inputs, [model.get_layer("gru_states").output,
                                       model.get_layer("sequence_output").output])
    states, output = (ops.convert_to_numpy(t) for t in probe(batch()))
    np.testing.assert_allclose(output, states, atol=1e-7)  # zero context projection at start
    projection = model.get_layer("context_projection")
    projection.set_weights([np.eye(16, dtype="float32")])
    states, output = (ops.convert_to_numpy(t) for t in probe(batch()))
    # The default attends to the input item vectors: the context is theirs, weighed by states.
    items = keras.Model(model.inputs, model.get_layer("attention_memory").output)(batch())
    context = ops.convert_to_numpy(model.get_layer("attention")(
        states, padding_mask=batch() != 0, memory=items)[0])
    np.testing.assert_allclose(output, states + context, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"`decoder` must be one of \('tanh', 'linear'"):
        small_model("gru_attention", decoder="bilinear")
    with pytest.raises(ValueError, match=r"`attend_to` must be one of \('states', 'items'\)"):
        small_model("gru_attention", attend_to="embeddings")


def test_gru_attention_without_attention_has_no_attention_layer():
    model = small_model("gru_attention", use_attention=False)
    names = {layer.name for layer in model.layers}
    assert "attention" not in names and "state_and_context" not in names
    with pytest.raises(ValueError, match="has no 'attention' layer"):
        attention_weights_model(model)


def test_pretrained_embeddings_are_loaded_and_can_be_frozen():
    matrix = np.random.default_rng(1).normal(size=(NUM_ITEMS + 1, 12)).astype("float32")
    model = ks.build_model("gru", NUM_ITEMS, MAX_LEN, item_embeddings=matrix,
                           freeze_item_embeddings=True)
    layer = model.get_layer("item_embedding")
    np.testing.assert_array_equal(layer.get_weights()[0], matrix)
    assert not layer.trainable
    with pytest.raises(ValueError, match=r"shape \(num_items \+ 1, dim\)"):
        ks.build_model("gru", NUM_ITEMS, MAX_LEN, item_embeddings=matrix[1:])


def test_item2vec_rows_are_gensim_vectors_and_never_see_evaluation_targets():
    import pandas as pd

    # Item 99 only ever appears as user 0's last (test) item; item 98 only as a validation target.
    rows = [(u, i, t) for u in range(40) for t, i in enumerate([1, 2, 3, 4, 5])]
    rows += [(0, 98, 10), (0, 99, 11)]
    log = ks.datasets.from_dataframe(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    data = ks.prepare(log, max_len=5)
    matrix, w2v = ks.item2vec.train_item2vec(data, embedding_dim=8, epochs=2)
    assert matrix.shape == (data.num_items + 1, 8) and np.all(matrix[0] == 0)
    for token in w2v.wv.index_to_key:
        np.testing.assert_array_equal(matrix[int(token)], w2v.wv[token])
    held_out = data.vocabulary.lookup([98, 99])
    assert not {str(i) for i in held_out} & set(w2v.wv.index_to_key)
    assert set(w2v.wv.index_to_key) == {str(i) for i in np.unique(data.train.values)}
    # Unseen items get a seeded random row, not zeros.
    assert np.all(np.abs(matrix[held_out]).sum(axis=1) > 0)
    again, _ = ks.item2vec.train_item2vec(data, embedding_dim=8, epochs=2)
    np.testing.assert_array_equal(matrix, again)
