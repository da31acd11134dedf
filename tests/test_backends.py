"""The models use keras.layers and keras.ops only: they build, train and reload on JAX too."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import os, tempfile
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    import keras_seqrec as ks
    from keras_seqrec.losses import SoftmaxCrossEntropy

    rng = np.random.default_rng(0)
    x = rng.integers(1, 21, size=(32, 6)).astype("int32")
    x[:4, :3] = 0
    y = np.where(x == 0, 0, (x % 20) + 1).astype("int32")

    def trains_and_round_trips(model, label):
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=SoftmaxCrossEntropy())
        first = model.evaluate(x, y, verbose=0)
        model.fit(x, y, epochs=15, batch_size=16, verbose=0)
        assert model.evaluate(x, y, verbose=0) < first, label
        path = os.path.join(tempfile.mkdtemp(), "m.keras")
        model.save(path)
        again = keras.saving.load_model(path)
        np.testing.assert_allclose(np.asarray(model(x)), np.asarray(again(x)), atol=1e-6)

    for name in ks.available_models():
        kwargs = {"embedding_dim": 8}
        if ks.models.hyperparameters(name).get("item_embeddings", None) is not None:
            kwargs = {"item_embeddings": rng.normal(size=(21, 8)).astype("float32")}
        trains_and_round_trips(ks.build_model(name, 20, 6, **kwargs), name)
        print("ok", name)

    # Feature-aware items (ids + features, features only) train and reload on JAX as well.
    from keras_seqrec.testing import synthetic_item_features
    for extra in ({}, {"id_embedding": False}):
        trains_and_round_trips(ks.build_model("sasrec", 20, 6, embedding_dim=8,
                                              item_features=synthetic_item_features(20),
                                              **extra), extra)
    print("features-fine")

    # The whole fit_recommender path (bucketed batches, validation, early stopping) on JAX.
    from keras_seqrec.testing import deterministic_log
    from keras_seqrec.evaluation import evaluate_recommender
    data = ks.prepare(deterministic_log(num_users=200, num_items=20, length=10), max_len=8)
    model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=16, hidden_dim=16)
    ks.training.fit_recommender(model, data, epochs=12, batch_size=32, learning_rate=1e-2,
                                early_stopping_patience=12, verbose=0)
    assert evaluate_recommender(model, data, "test", cutoffs=[1])["hr@1"] >= 0.9
    print("fit_recommender ok")

    # On the cold-start split the new items stay out of the softmax: their rows never move.
    data = ks.prepare(deterministic_log(num_users=200, num_items=20, length=10), max_len=8,
                      cold_items=0.1)
    model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=8, hidden_dim=8)
    before = np.asarray(model.get_layer("item_embedding").embeddings.numpy()).copy()
    ks.training.fit_recommender(model, data, epochs=2, verbose=0)
    after = np.asarray(model.get_layer("item_embedding").embeddings.numpy())
    np.testing.assert_array_equal(before[data.cold_items], after[data.cold_items])
    assert not np.allclose(before[1:], after[1:])
    print("cold-start ok")
""")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_every_model_trains_and_round_trips_on_jax():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    import keras_seqrec as ks

    assert result.stdout.count("ok ") == len(ks.available_models())
    assert "fit_recommender ok" in result.stdout
    assert "features-fine" in result.stdout
    assert "cold-start ok" in result.stdout
