"""fit_recommender: early stopping, restoring the best epoch, resuming, and real learning."""

import json

import keras
import numpy as np
import pytest

import keras_seqrec as ks
from keras_seqrec.evaluation import PopularityBaseline, evaluate_recommender
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
    again = evaluate_recommender(model, toy_data, "validation", ks=[10])["ndcg@10"]
    assert again == pytest.approx(max(val))


def test_early_stopping_stops(toy_data):
    model = tiny(toy_data)
    # A zero learning rate never improves after the first epoch: stop after 1 + patience.
    history = fit_recommender(model, toy_data, epochs=10, learning_rate=0.0,
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


def test_callbacks_see_validation_metrics_and_can_lower_the_learning_rate(toy_data):
    # The recipe behind the Beauty SASRec result: halve the rate when val NDCG@10 stalls.
    model = tiny(toy_data)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_ndcg@10", mode="max", factor=0.5,
                                                patience=1)
    # A rate of 1e-9 leaves validation flat: epochs 2 and 3 each stall and halve it.
    fit_recommender(model, toy_data, epochs=3, learning_rate=1e-9, early_stopping_patience=10,
                    callbacks=[plateau], verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-9 / 4, rel=1e-5)


def test_interrupted_run_resumes_from_the_last_finished_epoch(toy_data, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    model = tiny(toy_data)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_recommender(model, toy_data, epochs=5, checkpoint_dir=ckpt, verbose=0,
                        early_stopping_patience=10, callbacks=[Interrupt(after_epoch=1)])
    with open(tmp_path / "ckpt" / "best.json") as f:
        saved = json.load(f)
    # A new process would rebuild the model: do the same, then resume.
    recorder = EpochRecorder()
    resumed = tiny(toy_data)
    fit_recommender(resumed, toy_data, epochs=5, checkpoint_dir=ckpt, verbose=0,
                    early_stopping_patience=10, callbacks=[recorder])
    assert recorder.epochs == [2, 3, 4]
    assert saved["best_epoch"] in (0, 1)
    # A finished run leaves no resume state behind for the next run in the same folder.
    assert not (tmp_path / "ckpt" / "best.json").exists()
    recorder = EpochRecorder()
    fit_recommender(tiny(toy_data), toy_data, epochs=2, checkpoint_dir=ckpt, verbose=0,
                    callbacks=[recorder])
    assert recorder.epochs == [0, 1]


def test_same_seed_same_metrics(toy_data):
    results = []
    for _ in range(2):
        keras.utils.set_random_seed(3)  # the initial weights are drawn when the model is built
        model = tiny(toy_data)
        fit_recommender(model, toy_data, epochs=2, seed=3, verbose=0)
        results.append(evaluate_recommender(model, toy_data, "test", ks=[10]))
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
    pop = evaluate_recommender(PopularityBaseline(data), data, "validation", ks=[10])
    assert history.best_score > 1.5 * pop["ndcg@10"], (history.history, pop)
