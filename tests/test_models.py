"""The model battery, run on every registered model, plus the attention layer and item2vec."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_seqrec as ks
from keras_seqrec.evaluation import evaluate_recommender
from keras_seqrec.losses import SoftmaxCrossEntropy
from keras_seqrec.models import attention_weights_model, hyperparameters
from keras_seqrec.testing import deterministic_log

NUM_ITEMS, MAX_LEN = 30, 8


def small_model(name, num_items=NUM_ITEMS, max_len=MAX_LEN, **overrides):
    """Every model, small; required arguments (a pretrained matrix) are filled in."""
    kwargs = {}
    params = hyperparameters(name)
    for key, value in (("embedding_dim", 16), ("hidden_dim", 16), ("attention_units", 8)):
        if key in params:
            kwargs[key] = value
    if params.get("item_embeddings", None) is not None:  # required, no default
        rng = np.random.default_rng(0)
        kwargs["item_embeddings"] = rng.normal(size=(num_items + 1, 16)).astype("float32")
    kwargs.update(overrides)
    return ks.build_model(name, num_items, max_len, **kwargs)


def batch(seed=0, n=4):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, NUM_ITEMS + 1, size=(n, MAX_LEN)).astype("int32")
    x[0, :3] = 0  # left padding
    x[1, :MAX_LEN - 1] = 0  # a single item
    return x


MODELS = ks.available_models()
# Every model with its defaults, plus the architecture switches the defaults leave off.
VARIANTS = [pytest.param(name, {}, id=name) for name in MODELS] + [
    pytest.param("sasrec", {"normalized_residual": True}, id="sasrec-normalized_residual"),
    pytest.param("sasrec", {"ffn_dim": 64}, id="sasrec-ffn_dim"),
]


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_padding_gets_no_probability(name):
    model = small_model(name)
    logits = model(batch(), training=False)
    assert tuple(logits.shape) == (4, MAX_LEN, NUM_ITEMS + 1)
    assert ks.models.model_max_len(model) == MAX_LEN
    probs = ops.convert_to_numpy(ops.softmax(logits, axis=-1))
    assert np.all(probs[..., 0] == 0.0)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name, options", VARIANTS)
def test_causal_outputs_do_not_see_the_future(name, options):
    model = small_model(name, **options)
    x = batch()
    reference = ops.convert_to_numpy(model(x, training=False))
    for t in range(MAX_LEN - 1):
        changed = x.copy()
        changed[:, t + 1:] = (changed[:, t + 1:] % NUM_ITEMS) + 1  # new items after t
        out = ops.convert_to_numpy(model(changed, training=False))
        np.testing.assert_allclose(out[:, : t + 1], reference[:, : t + 1], rtol=1e-5, atol=1e-5)
        assert not np.allclose(out[:, t + 1:], reference[:, t + 1:])


@pytest.mark.parametrize("name, options", VARIANTS)
def test_trimmed_padding_and_long_inputs_give_the_same_scores(name, options):
    # Training and evaluation drop all-padding columns; longer inputs are cut to max_len.
    model = small_model(name, **options)
    x = batch()
    x[:, :3] = 0  # three leading padding columns in every row
    full = ops.convert_to_numpy(model(x, training=False))
    trimmed = ops.convert_to_numpy(model(x[:, 3:], training=False))
    np.testing.assert_allclose(trimmed, full[:, 3:], rtol=1e-4, atol=1e-5)
    longer = np.concatenate([np.ones((len(x), 4), x.dtype), x], axis=1)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model(longer, training=False)), full
    )


@pytest.mark.parametrize("name, options", VARIANTS)
def test_last_position_model_scores_equal_the_last_row(name, options):
    # Ranking and serving score through last_position_model; gru_attention's attends from the
    # last position only, so its equality with the full model is not automatic.
    model = small_model(name, **options)
    x = np.concatenate([batch(), np.zeros((1, MAX_LEN), "int32")])  # + a row of padding
    full = ops.convert_to_numpy(model(x, training=False))[:, -1]
    last = ops.convert_to_numpy(ks.models.last_position_model(model)(x, training=False))
    np.testing.assert_allclose(last, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, options", VARIANTS)
def test_keras_file_round_trip_gives_identical_outputs(name, options, tmp_path):
    model = small_model(name, **options)
    x = batch()
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model(x, training=False)),
        ops.convert_to_numpy(loaded(x, training=False)),
    )


@pytest.mark.parametrize("name", MODELS)
def test_training_steps_reduce_the_loss_and_train_the_tied_output(name):
    keras.utils.set_random_seed(0)
    model = small_model(name, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=SoftmaxCrossEntropy())
    x = batch(n=16)
    y = np.where(x == 0, 0, (x % NUM_ITEMS) + 1).astype("int32")
    before = model.get_layer("item_embedding").get_weights()[0].copy()
    trainable_before = [ops.convert_to_numpy(w) for w in model.trainable_weights]
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.7 * first
    # Every trainable weight really trains (a variable captured as a constant in the
    # functional graph, e.g. a position table, would silently stay at its initial value).
    for var, old in zip(model.trainable_weights, trainable_before):
        assert not np.allclose(ops.convert_to_numpy(var), old), f"{var.path} did not change"
    after = model.get_layer("item_embedding").get_weights()[0]
    # Items that never appear in the input can only be trained through the tied output layer.
    absent = np.setdiff1d(np.arange(1, NUM_ITEMS + 1), x)
    if model.get_layer("item_embedding").trainable and "item_scores" not in [
        layer.name for layer in model.layers
    ] and len(absent):
        assert not np.allclose(before[absent], after[absent])


@pytest.mark.parametrize("name", MODELS)
def test_mixed_bfloat16(name):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = small_model(name)
        model.compile(optimizer="adam", loss=SoftmaxCrossEntropy())
        x = batch(n=8)
        y = np.where(x == 0, 0, (x % NUM_ITEMS) + 1).astype("int32")
        history = model.fit(x, y, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        logits = model(x, training=False)
        assert logits.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", MODELS)
def test_learns_a_deterministic_next_item_rule(name):
    data = ks.prepare(deterministic_log(num_users=300, num_items=20, length=12), max_len=10)
    keras.utils.set_random_seed(0)
    model = small_model(name, num_items=data.num_items, max_len=data.max_len, dropout=0.0)
    ks.training.fit_recommender(model, data, epochs=15, batch_size=32, learning_rate=1e-2,
                                early_stopping_patience=15, verbose=0)
    metrics = evaluate_recommender(model, data, "test", cutoffs=[1])
    assert metrics["hr@1"] >= 0.9, metrics


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


def test_attention_from_the_last_position_only_is_the_last_row_of_the_full_call():
    layer = ks.layers.CausalBahdanauAttention(units=8)
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


def test_attention_layer_equals_the_additive_formula_written_out_in_numpy():
    layer = ks.layers.CausalBahdanauAttention(units=8)
    rng = np.random.default_rng(1)
    states = rng.normal(size=(2, 13, 4)).astype("float32")
    mask = np.ones((2, 13), bool)
    mask[0, :5] = False
    context, weights = (ops.convert_to_numpy(t) for t in layer(states, padding_mask=mask))
    w_query, = layer.query_dense.get_weights()
    w_key, b_key = layer.key_dense.get_weights()
    v, = layer.score_dense.get_weights()
    scores = np.tanh((states @ w_query)[:, :, None] + (states @ w_key + b_key)[:, None]) @ v
    allowed = np.tril(np.ones((13, 13), bool))[None] & mask[:, None, :] & mask[:, :, None]
    scores = np.where(allowed, scores[..., 0], -np.inf)
    want = np.exp(scores - scores.max(-1, keepdims=True).clip(-1e30))
    want = np.nan_to_num(want / want.sum(-1, keepdims=True))
    np.testing.assert_allclose(weights, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, want @ states, rtol=1e-5, atol=1e-5)


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


def test_gru_attention_embedding_dropout_is_separate_and_defaults_to_dropout():
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
    layer = ks.layers.CausalBahdanauAttention(units=5, name="att")
    clone = ks.layers.CausalBahdanauAttention.from_config(layer.get_config())
    assert clone.units == 5 and clone.name == "att"


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
