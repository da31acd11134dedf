"""Several devices through keras.distribution: JAX with four virtual CPU devices."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import keras
    import keras_seqrec as ks
    from keras_seqrec.distribution import shard_shapes
    from keras_seqrec.testing import deterministic_log
    from keras_seqrec.training import build_and_fit

    # 402 windows in batches of 32: the last holds 18 rows, which 4 devices do not divide,
    # so it is padded to 20. No dropout: its masks are drawn for the padded batch's shape.
    data = ks.prepare(deterministic_log(num_users=402, num_items=20, length=10), max_len=8)
    out = {"devices": len(keras.distribution.list_devices())}
    fit = dict(epochs=4, batch_size=32, learning_rate=1e-2, early_stopping_patience=12,
               verbose=0)
    hyper = {"embedding_dim": 16, "hidden_dim": 16, "dropout": 0.0}
    for spec in (None, "data", "model:2"):
        model, history = build_and_fit("gru", data, hyper, distribution=spec, **fit)
        out[str(spec)] = {"loss": history.history["loss"],
                          "shards": shard_shapes(model.get_layer("item_embedding").embeddings)}
        path = os.path.join(sys.argv[1], f"{spec}.keras")
        model.save(path)
        x = data.test.inputs(data.max_len)[:8]
        again = keras.saving.load_model(path)
        out[str(spec)]["reload_error"] = float(np.abs(np.asarray(model(x))
                                                      - np.asarray(again(x))).max())
        out[str(spec)]["scores"] = np.asarray(model(x))[:, -1, 1:].tolist()
        out["x"] = x.tolist()
    untied, _ = build_and_fit("sasrec", data, {"embedding_dim": 16, "tie_embeddings": False},
                              distribution="model:2", **fit)
    out["untied_shards"] = shard_shapes(untied.get_layer("item_scores").dense.kernel)
    try:
        ks.distribution.get("model:3")
    except ValueError as error:
        out["error"] = str(error)
    print(json.dumps(out))
""")


def test_data_and_model_parallel_training_on_four_virtual_devices(tmp_path):
    import numpy as np

    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    single, data, model = out["None"], out["data"], out["model:2"]
    # Same seed, same batches: the distributed runs train the single-device model. (Keras
    # averages the epoch's loss over batches weighted by their rows, padding rows included,
    # so the reported curve moves by a few 1e-3 where a padded batch counts 20 rows for 18.)
    assert single["loss"][-1] < 0.5 * single["loss"][0]
    for run in (data, model):
        assert max(abs(a - b) for a, b in zip(run["loss"], single["loss"])) < 1e-2
        np.testing.assert_allclose(run["scores"], single["scores"], atol=1e-4)
        assert run["reload_error"] < 1e-5
    # Data parallel replicates the (21, 16) item table; model parallel splits its width.
    assert single["shards"] == [[21, 16]]
    assert data["shards"] == [[21, 16]] * 4
    assert model["shards"] == [[21, 8]] * 4
    assert out["untied_shards"] == [[8, 21]] * 4  # (width, items + 1) split along the width
    assert "must divide the number of devices (4)" in out["error"]
    # The model-parallel model exports: its .keras file, loaded on one device in this process,
    # becomes a SavedModel serving the scores it computed on four.
    import keras
    import tensorflow as tf

    import keras_seqrec as ks
    from keras_seqrec.models import last_position_model

    trained = keras.saving.load_model(tmp_path / "model:2.keras")
    vocab = ks.Vocabulary(np.arange(100, 120))  # 20 items, raw ids 100..119
    saved = ks.export_saved_model(trained, vocab, tmp_path / "export", exclude_seen=False)
    score_all = tf.saved_model.load(saved).signatures["score_all"]
    history = [["100", "105", "107"]]
    window = np.zeros((1, 8), np.int32)
    window[0, -3:] = vocab.lookup(history[0])
    served = score_all(history=tf.constant(history))["scores"].numpy()[0]
    expected = np.asarray(last_position_model(trained).predict_on_batch(window))[0, 1:]
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    # ...and the loaded model scores as it did on four devices under JAX.
    np.testing.assert_allclose(np.asarray(trained(np.array(out["x"])))[:, -1, 1:],
                               model["scores"], atol=1e-4)


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


PROCESSES = textwrap.dedent("""
    import json, sys
    process_id, count, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    import keras_seqrec as ks
    if count > 1:
        ks.distribution.initialize(f"localhost:{port}", num_processes=count,
                                   process_id=process_id)
    import numpy as np
    import keras
    from keras_seqrec.data.pipeline import ShardedBatches
    from keras_seqrec.testing import deterministic_log
    from keras_seqrec.training import build_and_fit

    rows = [0]
    take = ShardedBatches.__getitem__

    def counted(self, index):  # how many rows this process feeds
        out = take(self, index)
        rows[0] += len(out[1])
        return out

    ShardedBatches.__getitem__ = counted
    data = ks.prepare(deterministic_log(num_users=400, num_items=20, length=10), max_len=8)
    model, history = build_and_fit(
        "gru", data, {"embedding_dim": 16, "hidden_dim": 16, "dropout": 0.0},
        distribution="data", epochs=3, batch_size=30, learning_rate=1e-2,
        early_stopping_patience=12, verbose=0)
    weights = np.concatenate([np.ravel(keras.ops.convert_to_numpy(w)) for w in model.weights])
    print(json.dumps({"devices": len(keras.distribution.list_devices()),
                      "loss": history.history["loss"],
                      "val": history.history["val_ndcg@10"], "rows": rows[0],
                      "weights": float(np.abs(weights).sum())}))
""")


def test_two_processes_train_as_one():
    pytest.importorskip("jax")
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    env = dict(os.environ, KERAS_BACKEND="jax")
    run = [sys.executable, "-c", PROCESSES]
    procs = [subprocess.Popen(run + [str(i), "2", port], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    single = subprocess.run(run + ["0", "1", port], env=env, capture_output=True, text=True,
                            timeout=600)
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads(single.stdout.strip().splitlines()[-1])
    two = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    # 3 epochs of 400 users' windows (Keras may read a batch once more to build).
    assert one["devices"] == 1 and 3 * 400 <= one["rows"] <= 3 * 400 + 30
    for run in two:
        assert run["devices"] == 2  # one CPU device per process, one mesh over both
        # Every process fed half of each batch of 30 (14 batches an epoch; an odd one gets
        # one padding row)...
        assert 0 <= 2 * run["rows"] - one["rows"] <= 3 * 14
        # ...and together they trained the single process's model, step for step.
        assert max(abs(a - b) for a, b in zip(run["loss"], one["loss"])) < 1e-4
        assert max(abs(a - b) for a, b in zip(run["val"], one["val"])) < 1e-6
        assert abs(run["weights"] - one["weights"]) < 1e-3 * one["weights"]
    assert two[0]["rows"] == two[1]["rows"]


def test_two_cli_processes_train_one_model(tmp_path):
    """The README's cluster recipe on localhost: the same `keras-seqrec train` command in two
    processes told apart by KERAS_DISTRIBUTION_PROCESS_ID."""
    pytest.importorskip("jax")
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = []
    for i in range(2):
        env = dict(os.environ, KERAS_BACKEND="jax",
                   KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{port},localhost:{port + 1}",
                   KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(i))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "keras_seqrec.cli", "train", "--model", "gru", "--epochs",
             "1", "--embedding-dim", "8", "--hidden-dim", "8", "--min-item-interactions", "20",
             "--max-len", "20", "--distribution", "data", "--verbose", "0",
             "--output", str(tmp_path / f"run{i}")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    metrics = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        with open(tmp_path / f"run{len(metrics)}" / "run.json") as f:
            record = json.load(f)
        assert record["training"]["processes"] == 2 and record["training"]["devices"] == 2
        metrics.append(record["metrics"]["gru"]["test"]["ndcg@10"])
    assert metrics[0] == pytest.approx(metrics[1], abs=1e-6)  # one model, trained together


def test_sharded_batches_are_the_batch_plus_zero_target_padding():
    import numpy as np

    from keras_seqrec.data.pipeline import ShardedBatches

    rng = np.random.default_rng(0)
    x = {"item_ids": rng.integers(1, 9, (7, 4)), "targets": rng.integers(1, 9, (7, 4)),
         "negatives": rng.integers(1, 9, (7, 5))}
    batch = [(x, x["targets"])]
    for shards, processes, size in ((3, 3, 3), (4, 1, 8), (4, 2, 4), (1, 1, 7)):
        parts = [ShardedBatches(batch, shards, i, processes)[0] for i in range(processes)]
        assert [len(y) for _, y in parts] == [size] * processes
        padding = size * processes - 7
        for key in x:
            joined = np.concatenate([p[0][key] for p in parts])
            np.testing.assert_array_equal(joined[:7], x[key])
            if key == "targets":
                assert (joined[7:] == 0).all()  # padding rows: no target, no loss
            else:
                np.testing.assert_array_equal(joined[7:], x[key][[-1] * padding])
        np.testing.assert_array_equal(np.concatenate([y for _, y in parts])[:7], x["targets"])
    with pytest.raises(ValueError, match="batch's 7 rows first"):
        ShardedBatches([({"item_ids": x["item_ids"], "shared": np.zeros(5)}, x["targets"])],
                       2)[0]
    with pytest.raises(ValueError, match="outside 0..1"):
        ShardedBatches(batch, 2, 2, 2)
    with pytest.raises(ValueError, match="cannot be split over 2"):
        ShardedBatches(batch, 3, 0, 2)
