"""Losses against their formulas, sampled softmax against full softmax, and the sampler."""

import numpy as np
import pytest
from keras import ops

import keras_seqrec as ks
from keras_seqrec import losses
from keras_seqrec.sampling import PopularitySampler
from keras_seqrec.training import sampled_training_model


def value(loss, y_true, y_pred):
    return float(loss(ops.array(y_true), ops.array(y_pred, dtype="float32")))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# Two positions; the first is padding (target 0) and must not count.
Y = [[0, 7]]
S = [[[9.0, 9.0, 9.0], [1.5, 0.5, -1.0]]]  # target score 1.5, negatives 0.5 and -1.0


def test_full_softmax_cross_entropy_by_hand():
    logits = [[[-1e9, 5.0, 5.0, 5.0], [-1e9, 2.0, 0.0, 1.0]]]
    expected = -(2.0 - np.log(np.exp(2.0) + 1 + np.exp(1.0)))  # target 1 at position 2
    assert value(losses.SoftmaxCrossEntropy(), [[0, 1]], logits) == pytest.approx(expected,
                                                                                 rel=1e-5)


def test_sampled_softmax_by_hand():
    expected = np.log(np.exp(1.5) + np.exp(0.5) + np.exp(-1.0)) - 1.5
    assert value(losses.SampledSoftmax(2), Y, S) == pytest.approx(expected, rel=1e-5)


def test_bce_and_gbce_by_hand():
    bce = -np.log(sigmoid(1.5)) - np.log(1 - sigmoid(0.5)) - np.log(1 - sigmoid(-1.0))
    assert value(losses.BinaryCrossEntropy(2), Y, S) == pytest.approx(bce, rel=1e-5)
    gbce = losses.GBCE(num_negatives=2, t=0.5)
    gbce.set_num_items(11)  # a = 2/10; beta = 0.2 * (0.5 * (1 - 5) + 5) = 0.6
    assert gbce.beta == pytest.approx(0.6)
    expected = -0.6 * np.log(sigmoid(1.5)) - np.log(1 - sigmoid(0.5)) - np.log(1 - sigmoid(-1.0))
    assert value(gbce, Y, S) == pytest.approx(expected, rel=1e-5)
    plain = losses.GBCE(num_negatives=2, t=0.0)
    plain.set_num_items(11)
    assert value(plain, Y, S) == pytest.approx(bce, rel=1e-5)  # t = 0 is BCE


def test_bpr_max_with_its_score_regularisation_by_hand():
    neg = np.array([0.5, -1.0])
    w = np.exp(neg) / np.exp(neg).sum()
    expected = -np.log((w * sigmoid(1.5 - neg)).sum()) + 2.0 * (w * neg**2).sum()
    assert value(losses.BPRMax(2, reg=2.0), Y, S) == pytest.approx(expected, rel=1e-5)
    without = -np.log((w * sigmoid(1.5 - neg)).sum())
    assert value(losses.BPRMax(2, reg=0.0), Y, S) == pytest.approx(without, rel=1e-5)


def test_top1_max_by_hand():
    neg = np.array([0.5, -1.0])
    w = np.exp(neg) / np.exp(neg).sum()
    expected = (w * (sigmoid(neg - 1.5) + sigmoid(neg**2))).sum()
    assert value(losses.TOP1Max(2), Y, S) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", [losses.SoftmaxCrossEntropy(), losses.SampledSoftmax(2),
                                  losses.BinaryCrossEntropy(2), losses.BPRMax(2),
                                  losses.TOP1Max(2)], ids=lambda loss: loss.name)
def test_positions_per_batch_divides_the_sum_over_real_positions(loss):
    # Two real positions out of three; the padded one must count neither way.
    y = [[0, 2, 1]]
    scores = [[[9.0, 9.0, 9.0], [1.5, 0.5, -1.0], [0.2, 0.7, 0.1]]]
    mean = value(loss, y, scores)
    loss.positions_per_batch = 8.0
    assert value(loss, y, scores) == pytest.approx(mean * 2 / 8.0, rel=1e-5)
    loss.positions_per_batch = None


def test_fit_recommender_weighs_every_position_alike():
    from keras_seqrec.testing import deterministic_log
    from keras_seqrec.training import fit_recommender

    data = ks.prepare(deterministic_log(num_users=60, num_items=15, length=9), max_len=8)
    batches = data.training_batches(batch_size=16)
    _, targets = data.training_arrays()
    expected = (targets != 0).sum() / len(batches)
    assert batches.positions_per_batch == pytest.approx(expected)
    loss = losses.SoftmaxCrossEntropy()
    model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=4, hidden_dim=4)
    fit_recommender(model, data, epochs=1, batch_size=16, loss=loss, verbose=0)
    assert model.loss.positions_per_batch == pytest.approx(expected)
    assert loss.positions_per_batch is None  # the caller's loss object is left as it was


def test_accidental_hits_are_excluded():
    # The second negative is masked (-1e9, as CandidateLogits marks accidental hits).
    masked = [[[9.0, 9.0, 9.0], [1.5, 0.5, -1e9]]]
    expected = np.log(np.exp(1.5) + np.exp(0.5)) - 1.5
    assert value(losses.SampledSoftmax(2), Y, masked) == pytest.approx(expected, rel=1e-5)
    bce = -np.log(sigmoid(1.5)) - np.log(1 - sigmoid(0.5))
    assert value(losses.BinaryCrossEntropy(2), Y, masked) == pytest.approx(bce, rel=1e-5)
    assert value(losses.BPRMax(2, reg=1.0), Y, masked) == pytest.approx(
        -np.log(sigmoid(1.0)) + 0.25, rel=1e-5)


@pytest.mark.parametrize("name", ["gru", "sasrec"])
def test_sampled_softmax_with_every_item_as_negative_equals_full_softmax(name):
    num_items, max_len = 12, 6
    model = ks.build_model(name, num_items, max_len, embedding_dim=8)
    rng = np.random.default_rng(0)
    x = rng.integers(1, num_items + 1, size=(3, max_len)).astype("int32")
    x[0, :2] = 0
    y = np.where(x == 0, 0, rng.integers(1, num_items + 1, size=x.shape)).astype("int32")
    full = value(losses.SoftmaxCrossEntropy(), y, model(x, training=False))
    loss = losses.SampledSoftmax(num_negatives=num_items, alpha=0.0)
    uniform = PopularitySampler(np.ones(num_items + 1), alpha=0.0)
    train_model = sampled_training_model(model, loss, uniform.log_q)
    every_item = np.tile(np.arange(1, num_items + 1, dtype="int32"), (3, 1))
    scores = train_model({"item_ids": x, "targets": y, "negatives": every_item}, training=False)
    assert value(loss, y, scores) == pytest.approx(full, rel=1e-5)


def test_training_model_scores_match_the_full_logits():
    model = ks.build_model("gru", 10, 4, embedding_dim=8, tie_embeddings=False)
    x = np.array([[0, 1, 2, 3]], "int32")
    y = np.array([[0, 2, 3, 4]], "int32")
    negatives = np.array([[[5, 6], [7, 8], [9, 10], [1, 2]]], "int32")
    loss = losses.BinaryCrossEntropy(num_negatives=2)  # per-position negatives
    scores = np.asarray(sampled_training_model(model, loss)(
        {"item_ids": x, "targets": y, "negatives": negatives}, training=False))
    logits = np.asarray(model(x, training=False))
    for t in range(1, 4):
        expected = logits[0, t, [y[0, t], *negatives[0, t]]]
        np.testing.assert_allclose(scores[0, t], expected, rtol=1e-5, atol=1e-5)


def test_popularity_sampler_frequencies_follow_alpha_weighted_counts():
    counts = np.array([0, 1, 4, 9, 16, 0, 100])
    for alpha in (0.0, 0.5, 1.0):
        sampler = PopularitySampler(counts, alpha=alpha, seed=42)
        draws = sampler.sample(200_000)
        freq = np.bincount(draws, minlength=len(counts)) / len(draws)
        weights = np.where(counts > 0, counts.astype(float) ** alpha, 0.0)
        if alpha == 0.0:
            weights = np.ones(len(counts))
        weights[0] = 0
        expected = weights / weights.sum()
        assert freq[0] == 0  # padding never drawn
        # Chi-square test at a fixed seed; 5 or 6 degrees of freedom, 0.999 quantile ~ 22.
        support = expected > 0
        chi2 = ((freq[support] - expected[support]) ** 2 / expected[support]).sum() * len(draws)
        assert chi2 < 22.5, (alpha, chi2)
        if alpha > 0:
            assert freq[5] == 0  # never-seen items are never drawn


def test_losses_round_trip_their_config():
    import keras

    for cls in (losses.SampledSoftmax, losses.BinaryCrossEntropy, losses.GBCE, losses.BPRMax,
                losses.TOP1Max, losses.SoftmaxCrossEntropy):
        loss = cls(positions_per_batch=96.5)
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert clone.positions_per_batch == 96.5
        assert type(clone) is cls and clone.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="must be one of"):
        losses.get_loss("hinge")


def test_a_reloaded_gbce_keeps_its_calibration():
    import keras

    gbce = losses.GBCE(num_negatives=2, t=0.5)
    gbce.set_num_items(11)  # beta 0.6
    clone = keras.losses.deserialize(keras.losses.serialize(gbce))
    assert clone.beta == pytest.approx(0.6)
    assert value(clone, Y, S) == pytest.approx(value(gbce, Y, S), rel=1e-6)


@pytest.mark.parametrize("tied", [True, False])
def test_fused_full_softmax_equals_the_loss_on_the_logits_with_its_gradients(tied):
    """The default training path never builds the logits; its loss and every gradient must be
    those of `SoftmaxCrossEntropy` on the model's logits (padded targets included)."""
    import keras
    import tensorflow as tf

    from keras_seqrec.training import full_softmax_training_model

    keras.utils.set_random_seed(3)
    model = ks.build_model("sasrec", 30, 7, embedding_dim=8, tie_embeddings=tied)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 31, size=(5, 7)).astype("int32")
    y = rng.integers(1, 31, size=(5, 7)).astype("int32")
    y[:2, :3] = 0
    reference = losses.SoftmaxCrossEntropy(positions_per_batch=20.0)
    fused = losses.PositionLossValues(positions_per_batch=20.0)
    train_model = full_softmax_training_model(model)
    results = []
    for forward, loss in ((lambda: model(x, training=False), reference),
                          (lambda: train_model({"item_ids": x, "targets": y},
                                               training=False), fused)):
        with tf.GradientTape() as tape:
            value_ = loss(y, forward())
        grads = tape.gradient(value_, model.trainable_variables)
        # None: a variable the untied head never reads (the embedding's own output bias).
        results.append([value_.numpy()] + [None if g is None else tf.convert_to_tensor(g).numpy()
                                           for g in grads])
    # The same variables in the same order: a checkpoint of either resumes into the other.
    assert [v.path for v in train_model.variables] == [v.path for v in model.variables]
    for want, got in zip(*results):
        assert (want is None) == (got is None)
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_fused_cross_entropy_rows_over_chunk_boundaries_and_padding():
    from keras_seqrec.layers.item_embedding import softmax_cross_entropy_rows

    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(11, 4)).astype("float32")
    kernel = rng.normal(size=(6, 4)).astype("float32")
    bias = rng.normal(size=6).astype("float32")
    targets = np.array([1, 2, 0, 5, 3, 3, 4, 0, 1, 2, 5])
    logits = hidden @ kernel.T + bias
    logits[:, 0] = -np.inf  # the padding column is never a candidate
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    want = np.where(targets > 0, lse - logits[np.arange(11), targets], 0.0)
    for chunk in (1, 4, 11, 64):  # 11 rows: partial last chunk, one chunk, more than all
        got = ops.convert_to_numpy(softmax_cross_entropy_rows(hidden, kernel, bias, targets,
                                                              chunk_size=chunk))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 3, 8, 64])
def test_fused_cross_entropy_gradients_skip_padded_rows_exactly(chunk):
    # Padded rows are moved behind the real ones and their chunks skipped: the gradients must
    # still be those of the plain masked cross-entropy, row by row.
    import tensorflow as tf

    from keras_seqrec.layers.item_embedding import mask_padding_logits, softmax_cross_entropy_rows

    rng = np.random.default_rng(2)
    hidden = tf.constant(rng.normal(size=(13, 4)).astype("float32"))
    kernel = tf.constant(rng.normal(size=(7, 4)).astype("float32"))
    bias = tf.constant(rng.normal(size=7).astype("float32"))
    targets = np.array([0, 1, 0, 0, 6, 2, 0, 3, 0, 0, 5, 0, 1])  # padding interleaved
    weights = tf.constant(rng.uniform(0.5, 2.0, size=13).astype("float32"))
    results = []
    for fused in (True, False):
        with tf.GradientTape() as tape:
            tape.watch([hidden, kernel, bias])
            if fused:
                rows = softmax_cross_entropy_rows(hidden, kernel, bias, targets, chunk_size=chunk)
            else:
                logits = mask_padding_logits(tf.matmul(hidden, kernel, transpose_b=True) + bias)
                rows = tf.keras.losses.sparse_categorical_crossentropy(
                    targets, logits, from_logits=True) * tf.cast(targets != 0, "float32")
            value = tf.reduce_sum(rows * weights)
        results.append([rows.numpy()] + [tf.convert_to_tensor(g).numpy() for g in tape.gradient(
            value, [hidden, kernel, bias])])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not results[0][1][targets == 0].any()  # padded rows get no gradient


def test_fit_recommender_trains_the_default_softmax_through_the_fused_model(ml_small_data):
    from keras_seqrec.training import training_setup

    model = ks.build_model("gru", ml_small_data.num_items, ml_small_data.max_len,
                           embedding_dim=8, hidden_dim=8)
    train_model, batches, loss = training_setup(model, ml_small_data,
                                                losses.SoftmaxCrossEntropy())
    assert train_model.output_shape == (None, None)  # per-position losses, no logits
    assert isinstance(loss, losses.PositionLossValues)
    x, y = batches[0]
    assert set(x) == {"item_ids", "targets"} and (x["targets"] == y).all()
    assert loss.positions_per_batch == batches.positions_per_batch

    class Squared(losses.SoftmaxCrossEntropy):  # its own maths: must see the real logits
        def call(self, y_true, y_pred):
            return super().call(y_true, y_pred) ** 2

    train_model, _, loss = training_setup(model, ml_small_data, Squared())
    assert train_model is model and isinstance(loss, Squared)


def test_fused_cross_entropy_with_bfloat16_products_stays_close_to_float32():
    # The opt-in bf16 products (`speed.py head`) keep the loss and gradients near float32's
    # (bf16 holds 8 bits of mantissa) and still give padded rows nothing.
    import tensorflow as tf

    from keras_seqrec.layers.item_embedding import softmax_cross_entropy_rows

    rng = np.random.default_rng(3)
    hidden = tf.constant(rng.normal(0, 0.5, size=(40, 8)).astype("float32"))
    kernel = tf.constant(rng.normal(0, 0.5, size=(30, 8)).astype("float32"))
    bias = tf.constant(rng.normal(size=30).astype("float32"))
    targets = rng.integers(0, 30, size=40)
    results = {}
    for dtype in ("float32", "bfloat16"):
        with tf.GradientTape() as tape:
            tape.watch([hidden, kernel, bias])
            rows = softmax_cross_entropy_rows(hidden, kernel, bias, targets, chunk_size=16,
                                              matmul_dtype=dtype)
            value = tf.reduce_sum(rows)
        results[dtype] = [rows.numpy()] + [tf.convert_to_tensor(g).numpy() for g in
                                           tape.gradient(value, [hidden, kernel, bias])]
    assert results["bfloat16"][0].dtype == np.float32
    for got, want in zip(results["bfloat16"], results["float32"]):
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
        assert not np.array_equal(got, want)  # the products really ran in bfloat16
    assert not results["bfloat16"][1][targets == 0].any()
