"""fit_recommender: early stopping, restoring the best epoch, resuming, and real learning."""

import json

import keras
import numpy as np
import pytest

import keras_seqrec as ks
from keras_seqrec.baselines import PopularityBaseline
from keras_seqrec.evaluation import evaluate_recommender
from keras_seqrec.testing import deterministic_log
from keras_seqrec.training import fit_recommender


@pytest.fixture(scope="module")
def toy_data():
    return ks.prepare(deterministic_log(num_users=200, num_items=20, length=10), max_len=8)


def tiny(data, name="gru"):
    return ks.build_model(name, data.num_items, data.max_len, embedding_dim=8, hidden_dim=8)


class Interrupt(keras.callbacks.Callback):
    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after_epoch:
            raise RuntimeError("simulated crash")


class EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_history_has_validation_metrics_and_best_weights_are_restored(toy_data):
    model = tiny(toy_data)
    history = fit_recommender(model, toy_data, epochs=3, verbose=0)
    val = history.history["val_ndcg@10"]
    assert len(val) == 3 and len(history.history["loss"]) == 3
    assert history.best_score == max(val)
    assert history.best_epoch == int(np.argmax(val))
    # The restored model scores the best epoch's validation value, not the last one's.
    again = evaluate_recommender(model, toy_data, "validation", cutoffs=[10])["ndcg@10"]
    assert again == pytest.approx(max(val))


def test_early_stopping_stops(toy_data):
    model = tiny(toy_data)
    # A negligible learning rate never improves after the first epoch: stop after 1 + patience.
    history = fit_recommender(model, toy_data, epochs=10, learning_rate=1e-12,
                              early_stopping_patience=2, verbose=0)
    assert len(history.history["loss"]) == 3
    assert history.stopped_by == "early_stopping"
    history = fit_recommender(tiny(toy_data), toy_data, epochs=2, verbose=0)
    assert history.stopped_by == "epochs"


def test_time_limit_finishes_the_running_epoch_then_stops(toy_data):
    model = tiny(toy_data)
    # Any epoch outlasts a microsecond: exactly one epoch runs, is validated and is kept.
    history = fit_recommender(model, toy_data, epochs=10, time_limit=1e-6, verbose=0)
    assert history.stopped_by == "time_limit"
    assert len(history.history["loss"]) == 1 and len(history.history["val_ndcg@10"]) == 1
    assert history.best_epoch == 0
    with pytest.raises(ValueError, match="time_limit"):
        fit_recommender(model, toy_data, time_limit=0, verbose=0)


def test_time_limit_starts_no_epoch_that_would_end_after_it(monkeypatch):
    # A fake clock: a 40 s first epoch (it traces), then 25 s epochs, a 100 s limit. After
    # the third epoch (90 s) another would end at 115 s, so training stops there.
    import types

    from keras_seqrec import training

    clock = [0.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock[0])
    timer = training._EpochTimer(time_limit=100)
    timer.set_model(types.SimpleNamespace(stop_training=False))
    timer.on_train_begin()
    stopped_after = None
    for epoch, seconds in enumerate([40, 25, 25, 25, 25]):
        timer.on_epoch_begin(epoch)
        clock[0] += seconds
        timer.on_epoch_end(epoch)
        if timer.model.stop_training:
            stopped_after = epoch + 1
            break
    assert stopped_after == 3 and timer.out_of_time and clock[0] == 90


def test_callbacks_see_validation_metrics_and_can_lower_the_learning_rate(toy_data):
    # The recipe behind the Beauty SASRec result: halve the rate when val NDCG@10 stalls.
    model = tiny(toy_data)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_ndcg@10", mode="max", factor=0.5,
                                                patience=1)
    # A rate of 1e-9 leaves validation flat: epochs 2 and 3 each stall and halve it.
    fit_recommender(model, toy_data, epochs=3, learning_rate=1e-9, early_stopping_patience=10,
                    callbacks=[plateau], verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-9 / 4, rel=1e-5)


def test_built_in_schedules_plateau_halves_and_cosine_anneals_per_step(toy_data):
    model = tiny(toy_data)
    fit_recommender(model, toy_data, epochs=3, learning_rate=1e-9, early_stopping_patience=10,
                    learning_rate_schedule="plateau", plateau_patience=1, verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-9 / 4, rel=1e-5)

    class Rates(keras.callbacks.Callback):  # runs after the schedule has set this step's rate
        rates = []

        def on_train_batch_begin(self, batch, logs=None):
            self.rates.append(float(self.model.optimizer.learning_rate))

    model = tiny(toy_data)
    fit_recommender(model, toy_data, epochs=3, learning_rate=0.01, early_stopping_patience=10,
                    learning_rate_schedule="cosine", callbacks=[Rates()], verbose=0)
    rates = np.array(Rates.rates)
    progress = np.arange(len(rates)) / len(rates)  # epochs * steps, step by step
    want = 1e-4 + (0.01 - 1e-4) * 0.5 * (1 + np.cos(np.pi * progress))
    np.testing.assert_allclose(rates, want, rtol=1e-5)
    assert rates[0] == pytest.approx(0.01) and rates[-1] < 0.001
    with pytest.raises(ValueError, match="learning_rate_schedule.*None, 'plateau', 'cosine'"):
        fit_recommender(model, toy_data, learning_rate_schedule="linear", verbose=0)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    with pytest.raises(ValueError, match="its own learning-rate schedule"):
        fit_recommender(model, toy_data, optimizer=keras.optimizers.Adam(schedule),
                        learning_rate_schedule="cosine", verbose=0)


def seeded_tiny(data, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)  # as a new process running the same command would
    return ks.build_model("gru", data.num_items, data.max_len, embedding_dim=8, hidden_dim=8,
                          **kwargs)


def test_interrupted_run_resumes_from_the_last_finished_epoch(toy_data, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_recommender(seeded_tiny(toy_data), toy_data, epochs=5, checkpoint_dir=ckpt,
                        verbose=0, early_stopping_patience=10,
                        callbacks=[Interrupt(after_epoch=1)])
    with open(tmp_path / "ckpt" / "state.json") as f:
        saved = json.load(f)
    assert saved["epoch"] == 1 and saved["best_epoch"] in (0, 1)
    recorder = EpochRecorder()
    history = fit_recommender(seeded_tiny(toy_data), toy_data, epochs=5, checkpoint_dir=ckpt,
                              verbose=0, early_stopping_patience=10, callbacks=[recorder])
    assert recorder.epochs == [2, 3, 4]
    assert len(history.history["loss"]) == 5  # the whole run, resumed epochs included
    # A finished run leaves no resume state behind for the next run in the same folder.
    assert not (tmp_path / "ckpt").exists()
    recorder = EpochRecorder()
    fit_recommender(seeded_tiny(toy_data), toy_data, epochs=2, checkpoint_dir=ckpt, verbose=0,
                    callbacks=[recorder])
    assert recorder.epochs == [0, 1]


def test_a_checkpoint_of_another_run_is_refused_not_resumed(toy_data, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_recommender(seeded_tiny(toy_data), toy_data, epochs=3, checkpoint_dir=ckpt,
                        verbose=0, callbacks=[Interrupt(after_epoch=0)])
    other_data = ks.prepare(deterministic_log(num_users=150, num_items=20, length=10),
                            max_len=8)
    cases = [
        (dict(model=ks.build_model("lstm", toy_data.num_items, toy_data.max_len,
                                   embedding_dim=8, hidden_dim=8)), "model"),
        (dict(model=seeded_tiny(toy_data, dropout=0.5)), "architecture"),
        (dict(model=seeded_tiny(toy_data, seed=1)), "set_random_seed"),
        (dict(model=seeded_tiny(toy_data), data=other_data), "data"),
        (dict(model=seeded_tiny(toy_data), seed=7), "training"),
        (dict(model=seeded_tiny(toy_data), learning_rate=0.1), "training"),
    ]
    for kwargs, reason in cases:
        model = kwargs.pop("model")
        data = kwargs.pop("data", toy_data)
        with pytest.raises(ValueError, match=f"different.*{reason}|{reason}.*--overwrite"):
            fit_recommender(model, data, epochs=3, checkpoint_dir=ckpt, verbose=0, **kwargs)
    # The same run still resumes.
    recorder = EpochRecorder()
    fit_recommender(seeded_tiny(toy_data), toy_data, epochs=3, checkpoint_dir=ckpt,
                    verbose=0, callbacks=[recorder])
    assert recorder.epochs == [1, 2]


RESUME_SCRIPT = """
import json, sys
import keras, numpy as np
import keras_seqrec as ks
from keras_seqrec.testing import SigkillAt, deterministic_log

mode, ckpt, out = sys.argv[1:4]
data = ks.prepare(deterministic_log(num_users=200, num_items=20, length=10), max_len=8)
keras.utils.set_random_seed(0)
wanted = dict(embedding_dim=8, hidden_dim=8, dropout=0.3)
accepted = ks.models.hyperparameters(sys.argv[4])
model = ks.build_model(sys.argv[4], data.num_items, data.max_len,
                       **{k: v for k, v in wanted.items() if k in accepted})


loss = ks.losses.get_loss(sys.argv[5])
if getattr(loss, "sampled", False):
    loss = type(loss)(**{**loss.get_config(), "num_negatives": 8})
history = ks.fit_recommender(
    model, data, epochs=3, batch_size=32, learning_rate=1e-2, checkpoint_dir=ckpt,
    early_stopping_patience=5, verbose=0, loss=loss,
    callbacks=[SigkillAt(epoch=1, batch=2)] if mode == "kill" else [])  # in epoch 2 of 3
np.savez(out + ".npz", *model.get_weights())
test = ks.evaluate_recommender(model, data, "test", cutoffs=[10])
with open(out + ".json", "w") as f:
    json.dump({"history": history.history, "test": test, "best": history.best_epoch}, f)
"""


@pytest.mark.parametrize("name,loss", [("gru", "softmax"), ("sasrec", "bpr_max")])
def test_resume_after_sigkill_ends_exactly_like_an_uninterrupted_run(tmp_path, name, loss):
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(RESUME_SCRIPT)

    def start(mode, ckpt, out):
        return subprocess.Popen([sys.executable, str(script), mode, str(tmp_path / ckpt),
                                 str(tmp_path / out), name, loss],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def run(mode, ckpt, out):
        process = start(mode, ckpt, out)
        process.stderr_text = process.communicate(timeout=300)[1]
        return process

    whole, killed = start("plain", "a", "whole"), start("kill", "b", "killed")  # 2 cores
    whole.stderr_text = whole.communicate(timeout=300)[1]
    killed.stderr_text = killed.communicate(timeout=300)[1]
    assert whole.returncode == 0, whole.stderr_text[-2000:]
    assert killed.returncode == -9, killed.stderr_text[-2000:]  # a real SIGKILL in epoch 2/3
    assert json.loads((tmp_path / "b" / "state.json").read_text())["epoch"] == 0
    resumed = run("plain", "b", "resumed")
    assert resumed.returncode == 0, resumed.stderr_text[-2000:]
    a = json.loads((tmp_path / "whole.json").read_text())
    b = json.loads((tmp_path / "resumed.json").read_text())
    assert len(b["history"]["loss"]) == 3
    assert a == b  # identical history, best epoch and test metrics
    with np.load(tmp_path / "whole.npz") as wa, np.load(tmp_path / "resumed.npz") as wb:
        assert all(np.array_equal(wa[k], wb[k]) for k in wa.files)


def test_a_diverged_epoch_is_never_kept(toy_data):
    class Poison(keras.callbacks.Callback):
        """Turns the weights into NaN during epoch 3, as an exploding gradient would."""

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2:
                self.model.get_layer("item_embedding").embeddings.assign(
                    np.full(self.model.get_layer("item_embedding").embeddings.shape, np.nan))

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    model = seeded_tiny(toy_data)
    history = fit_recommender(model, toy_data, epochs=6, learning_rate=1e-2, verbose=0,
                              early_stopping_patience=10, callbacks=[Poison()])
    assert history.stopped_by == "diverged"
    assert history.best_epoch in (0, 1)
    assert all(np.isfinite(w).all() for w in model.get_weights())  # an earlier epoch's
    bad = seeded_tiny(toy_data)
    bad.get_layer("item_embedding").embeddings.assign(
        np.full(bad.get_layer("item_embedding").embeddings.shape, np.nan))
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        fit_recommender(bad, toy_data, epochs=3, verbose=0)


def test_learning_rate_and_loss_apply_to_a_compiled_model_and_bad_arguments_fail(toy_data):
    model = seeded_tiny(toy_data)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    loss = ks.losses.SoftmaxCrossEntropy()
    fit_recommender(model, toy_data, epochs=1, learning_rate=2e-3, loss=loss, verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(2e-3)
    assert isinstance(model.loss, ks.losses.SoftmaxCrossEntropy) and model.loss is not loss
    assert loss.positions_per_batch is None
    for kwargs, match in [(dict(learning_rate=-1), "learning_rate"),
                          (dict(learning_rate=float("nan")), "learning_rate"),
                          (dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"),
                          (dict(early_stopping_patience=0), "early_stopping_patience"),
                          (dict(loss=ks.losses.SampledSoftmax(num_negatives=20)),
                           "smaller than the catalogue"),
                          (dict(optimizer=keras.optimizers.Adam(1e-2), learning_rate=1e-3),
                           "differs from the optimizer")]:
        with pytest.raises(ValueError, match=match):
            fit_recommender(model, toy_data, verbose=0, **kwargs)


def test_same_seed_same_metrics(toy_data):
    results = []
    for _ in range(2):
        keras.utils.set_random_seed(3)  # the initial weights are drawn when the model is built
        model = tiny(toy_data)
        fit_recommender(model, toy_data, epochs=2, seed=3, verbose=0)
        results.append(evaluate_recommender(model, toy_data, "test", cutoffs=[10]))
    assert results[0] == results[1]


def test_mismatched_model_and_data_are_explained(toy_data):
    model = ks.build_model("gru", toy_data.num_items + 5, toy_data.max_len)
    with pytest.raises(ValueError, match="num_items=data.num_items"):
        fit_recommender(model, toy_data, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation_metric"):
        fit_recommender(tiny(toy_data), toy_data, epochs=1, validation_metric="auc", verbose=0)


def test_short_training_beats_popularity_on_ml_latest_small(ml_small_data):
    data = ml_small_data
    model = ks.build_model("gru", data.num_items, data.max_len)
    history = fit_recommender(model, data, epochs=12, batch_size=64, learning_rate=5e-3,
                              early_stopping_patience=12, verbose=0)
    pop = evaluate_recommender(PopularityBaseline(data), data, "validation", cutoffs=[10])
    assert history.best_score > 1.5 * pop["ndcg@10"], (history.history, pop)
