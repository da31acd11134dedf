"""Several devices through keras.distribution: JAX with four virtual CPU devices."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, tempfile
    import numpy as np
    import keras
    import keras_seqrec as ks
    from keras_seqrec.distribution import shard_shapes
    from keras_seqrec.testing import deterministic_log
    from keras_seqrec.training import build_and_fit

    data = ks.prepare(deterministic_log(num_users=400, num_items=20, length=10), max_len=8)
    out = {"devices": len(keras.distribution.list_devices())}
    fit = dict(epochs=4, batch_size=32, learning_rate=1e-2, early_stopping_patience=12,
               verbose=0)
    hyper = {"embedding_dim": 16, "hidden_dim": 16}
    for spec in (None, "data", "model:2"):
        model, history = build_and_fit("gru", data, hyper, distribution=spec, **fit)
        out[str(spec)] = {"loss": history.history["loss"],
                          "shards": shard_shapes(model.get_layer("item_embedding").embeddings)}
        path = os.path.join(tempfile.mkdtemp(), "m.keras")
        model.save(path)
        x = data.test.inputs(data.max_len)[:8]
        again = keras.saving.load_model(path)
        out[str(spec)]["reload_error"] = float(np.abs(np.asarray(model(x))
                                                      - np.asarray(again(x))).max())
    untied, _ = build_and_fit("sasrec", data, {"embedding_dim": 16, "tie_embeddings": False},
                              distribution="model:2", **fit)
    out["untied_shards"] = shard_shapes(untied.get_layer("item_scores").dense.kernel)
    try:
        ks.distribution.get("model:3")
    except ValueError as error:
        out["error"] = str(error)
    print(json.dumps(out))
""")


def test_data_and_model_parallel_training_on_four_virtual_devices():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    single, data, model = out["None"], out["data"], out["model:2"]
    # Same seed, same batches: the distributed runs follow the single-device loss curve.
    assert single["loss"][-1] < 0.5 * single["loss"][0]
    for run in (data, model):
        assert max(abs(a - b) for a, b in zip(run["loss"], single["loss"])) < 1e-3
        assert run["reload_error"] < 1e-5
    # Data parallel replicates the (21, 16) item table; model parallel splits its width.
    assert single["shards"] == [[21, 16]]
    assert data["shards"] == [[21, 16]] * 4
    assert model["shards"] == [[21, 8]] * 4
    assert out["untied_shards"] == [[8, 21]] * 4  # (width, items + 1) split along the width
    assert "must divide the number of devices (4)" in out["error"]


def test_distribution_needs_the_jax_backend():
    import keras

    from keras_seqrec import distribution

    if keras.backend.backend() == "jax":
        pytest.skip("this process runs JAX")
    with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
        distribution.get("data")
    with pytest.raises(ValueError, match="'data', 'model', 'model:N' or 'mirrored'"):
        distribution.get("pipeline")


def test_train_cli_refuses_a_distribution_it_cannot_run(capsys):
    import keras

    from keras_seqrec import cli

    if keras.backend.backend() == "jax":
        pytest.skip("this process runs JAX")
    assert cli.main(["train", "--distribution", "data", "--epochs", "1"]) == 2
    assert "--distribution: keras.distribution trains on the JAX backend" in (
        capsys.readouterr().err)


MIRRORED = textwrap.dedent("""
    import json, os, tempfile
    import tensorflow as tf

    # Four logical CPU devices, set up before anything starts TensorFlow's runtime.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 4)
    import numpy as np
    import keras
    import keras_seqrec as ks
    from keras_seqrec.testing import deterministic_log
    from keras_seqrec.training import build_and_fit
    from keras_seqrec.models.common import last_position_model

    data = ks.prepare(deterministic_log(num_users=400, num_items=20, length=10), max_len=8)
    fit = dict(epochs=4, batch_size=32, learning_rate=1e-2, early_stopping_patience=12,
               verbose=0)
    # No dropout: each replica draws its own dropout masks, so only a model without random
    # layers can follow the single-device curve step for step.
    hyper = {"embedding_dim": 16, "hidden_dim": 16, "dropout": 0.0}
    out = {}
    for spec in (None, "mirrored"):
        model, history = build_and_fit("gru", data, hyper, distribution=spec, **fit)
        table = model.get_layer("item_embedding").embeddings.value
        out[str(spec)] = {"loss": history.history["loss"],
                          "copies": len(getattr(table, "values", [table])),
                          "devices": sorted({v.device for v in getattr(table, "values",
                                                                       [table])})}
        # The SavedModel of a mirrored model serves the scores the model computes.
        window = data.test.inputs(data.max_len)[:1]
        history = [str(i) for i in data.vocabulary.to_ids(window[0][window[0] > 0])]
        path = ks.export_saved_model(model, data.vocabulary, tempfile.mkdtemp(),
                                     exclude_seen=False)
        served = tf.saved_model.load(str(path)).signatures["score_all"]
        expected = np.asarray(last_position_model(model).predict_on_batch(window))[0, 1:]
        out[str(spec)]["served_vs_model"] = float(np.abs(
            served(history=tf.constant([history]))["scores"].numpy()[0] - expected).max())
    print(json.dumps(out))
""")


def test_mirrored_strategy_on_four_logical_cpus():
    pytest.importorskip("tensorflow")
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    result = subprocess.run([sys.executable, "-c", MIRRORED], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    single, mirrored = out["None"], out["mirrored"]
    assert single["copies"] == 1
    assert mirrored["copies"] == 4 and len(mirrored["devices"]) == 4  # one replica per device
    assert single["loss"][-1] < 0.5 * single["loss"][0]
    # The same batches split four ways, gradients summed: the single-device loss curve.
    assert max(abs(a - b) for a, b in zip(mirrored["loss"], single["loss"])) < 1e-4
    for run in (single, mirrored):
        assert run["served_vs_model"] < 1e-4
