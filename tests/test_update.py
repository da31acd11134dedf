"""Incremental updates: a grown log, a grown catalogue, a new run and the next served version."""

import hashlib
import json
import os

import keras
import numpy as np
import pandas as pd
import pytest

import keras_seqrec as ks
from keras_seqrec import cli
from keras_seqrec.catalogue import grow_items
from keras_seqrec.datasets import from_dataframe
from keras_seqrec.export import Recommender
from keras_seqrec.models import last_position_model
from keras_seqrec.update import new_items, update_dataset


def test_a_grown_log_keeps_every_trained_index_and_appends_users_and_items():
    old = from_dataframe(pd.DataFrame({"user": [1, 1, 1, 2, 2, 2], "item": [7, 8, 9, 9, 8, 7],
                                       "timestamp": [1, 2, 3, 1, 2, 3]}))
    new = from_dataframe(pd.DataFrame({"user": [1, 3, 3, 3], "item": [5, 7, 5, 6],
                                       "timestamp": [4, 5, 6, 7]}))
    vocabulary = ks.Vocabulary([7, 8]).extended([9])
    data = update_dataset(old, new, vocabulary, max_len=5)
    assert data.vocabulary.lookup([7, 8, 9, 5, 6]).tolist() == [1, 2, 3, 4, 5]
    assert new_items(vocabulary, data.vocabulary) == [5, 6]
    # User 1's new interaction is appended after the old ones: it is the test target.
    test = dict(zip(data.test.users, data.test.targets))
    assert test[1] == 4 and test[3] == 5
    rows = dict(zip(data.test.users, (list(h) for h in data.test.history)))
    assert rows[1] == [1, 2, 3]
    with pytest.raises(ValueError, match="keep the old items' indices"):
        new_items(ks.Vocabulary([7, 8]).extended([6]), data.vocabulary)


@pytest.mark.parametrize("tie", [True, False])
def test_growing_the_catalogue_keeps_old_scores_and_starts_new_items_at_the_mean(tie):
    keras.utils.set_random_seed(0)
    model = ks.build_model("gru_attention", 10, 6, embedding_dim=8, hidden_dim=8,
                           tie_embeddings=tie)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(np.asarray(w.numpy()) + rng.normal(0, 0.3, w.shape).astype("float32"))
    grown = grow_items(model, 13)
    x = np.array([[0, 0, 1, 5, 3, 2], [4, 4, 9, 10, 1, 2]])
    before = last_position_model(model).predict_on_batch(x)
    after = last_position_model(grown).predict_on_batch(x)
    np.testing.assert_allclose(after[:, :11], before, atol=1e-6)
    # A new item's row is the average trained row, so its score is the average score.
    np.testing.assert_allclose(after[:, 11:], before[:, 1:].mean(axis=1, keepdims=True)
                               .repeat(3, axis=1), atol=1e-5)
    with pytest.raises(ValueError, match="more than the model's 10"):
        grow_items(model, 10)


def _digest(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), folder)] = hashlib.sha256(
                    f.read()).hexdigest()
    return out


def test_update_cli_makes_a_new_run_and_the_next_served_version(ml_small, tmp_path, capsys):
    frame = ml_small.frame
    t1, t2 = np.quantile(frame["timestamp"], [0.8, 0.9])
    old_csv, new_csv = tmp_path / "old.csv", tmp_path / "new.csv"
    frame[frame["timestamp"] < t1].to_csv(old_csv, index=False)
    frame[(frame["timestamp"] >= t1) & (frame["timestamp"] < t2)].to_csv(new_csv, index=False)
    run1, run2, served = tmp_path / "run1", tmp_path / "run2", tmp_path / "served"
    assert cli.main(["train", "--dataset", str(old_csv), "--rating-col", "rating",
                     "--model", "gru", "--epochs", "2", "--output", str(run1),
                     "--verbose", "0"]) == 0
    assert cli.main(["export", "--run-dir", str(run1), "--export-dir", str(served)]) == 0
    before = _digest(run1)
    capsys.readouterr()
    assert cli.main(["update", "--run-dir", str(run1), "--dataset", str(new_csv),
                     "--rating-col", "rating", "--epochs", "2", "--output", str(run2),
                     "--verbose", "0"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert _digest(run1) == before  # the old run is never modified
    old_vocab = ks.Vocabulary.load(run1 / "vocabulary.json")
    new_vocab = ks.Vocabulary.load(run2 / "vocabulary.json")
    added = new_items(old_vocab, new_vocab)
    assert len(added) > 20 and f"{len(added):,} new items" in out
    record = json.loads((run2 / "run.json").read_text())
    assert record["update"]["new_items"] == len(added)
    # The starting model's validation is reported, and a note says when the update is below it.
    update = record["update"]
    assert not update["kept_start"] and 0 < update["start_validation"] < 1
    below = update["best_validation"] < update["start_validation"]
    assert ("validates below the model it started from" in captured.err) == below
    assert record["dataset"]["updates"][0]["source"] == str(new_csv)
    # evaluate rebuilds the grown data from run.json and gets the run's own figures.
    assert cli.main(["evaluate", "--run-dir", str(run2), "-k", "10"]) == 0
    table = capsys.readouterr().out
    gru_test = [line for line in table.splitlines() if line.startswith("gru ")][-1]
    assert f"{record['metrics']['gru']['test']['ndcg@10']:.4f}" in gru_test
    # Exported next to the first, the update is version 2, whose catalogue holds the new items.
    assert cli.main(["export", "--run-dir", str(run2), "--export-dir", str(served)]) == 0
    assert sorted(os.listdir(served)) == ["1", "2"]
    recommender = Recommender(served)
    assert recommender.path.endswith("2")
    import tensorflow as tf

    new_frame = frame[(frame["timestamp"] >= t1) & (frame["timestamp"] < t2)]
    histories = [[str(i) for i in g["item"]][-50:] for _, g in new_frame.groupby("user")][:50]
    width = max(len(h) for h in histories)
    padded = tf.constant([h + [""] * (width - len(h)) for h in histories])
    served_scores = tf.saved_model.load(recommender.path).signatures["score_all"](
        history=padded)["scores"].numpy()
    assert served_scores.shape[1] == new_vocab.num_items
    unseen = np.isfinite(served_scores[:, old_vocab.num_items:])
    assert unseen.mean() > 0.9  # finite unless in that history (seen items are -inf)
    # Training moved the new items: the one most often chosen in the new period ranks
    # higher for these histories than where it started (the average trained item).
    busiest = new_frame[new_frame["item"].isin(added) & (new_frame["rating"] >= 3)]
    column = int(new_vocab.lookup([busiest["item"].value_counts().index[0]])[0]) - 1
    start = grow_items(keras.saving.load_model(run1 / "model.keras"), new_vocab.num_items)
    x = np.stack([np.pad(h, (50 - len(h), 0)) for h in
                  (new_vocab.lookup([int(i) for i in h]) for h in histories)]).astype("int32")
    before_update = np.asarray(last_position_model(start).predict_on_batch(x))[:, 1:]
    after_update = np.asarray(last_position_model(
        keras.saving.load_model(run2 / "model.keras")).predict_on_batch(x))[:, 1:]
    rank = lambda s: (s > s[:, [column]]).sum(axis=1).mean()  # noqa: E731
    assert rank(after_update) < 0.85 * rank(before_update)
    # An update never writes over its own source.
    assert cli.main(["update", "--run-dir", str(run1), "--dataset", str(new_csv),
                     "--output", str(run1)]) == 2
    assert "never modifies" in capsys.readouterr().err


def test_an_update_that_only_hurts_can_keep_the_model_it_started_from():
    from keras_seqrec.testing import deterministic_log
    from keras_seqrec.update import update_model

    keras.utils.set_random_seed(0)
    data = ks.prepare(deterministic_log(num_users=120, num_items=15, length=8), max_len=6)
    model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=8, hidden_dim=8)
    ks.fit_recommender(model, data, epochs=6, learning_rate=1e-2, verbose=0)
    before = np.asarray(model.predict_on_batch(data.validation.inputs(data.max_len)))
    class Ascent(keras.optimizers.SGD):  # every step makes the model worse
        def apply(self, grads, trainable_variables=None):
            return super().apply([-g for g in grads], trainable_variables)

    updated, history = update_model(model, data, epochs=2, verbose=0, keep_start_if_better=True,
                                    optimizer=Ascent(learning_rate=1.0))
    assert history.kept_start and history.best_epoch == -1
    assert len(history.history["loss"]) == 2 and history.start_score > 0.5
    after = np.asarray(updated.predict_on_batch(data.validation.inputs(data.max_len)))
    np.testing.assert_allclose(after, before, atol=1e-6)
    # By default the update's best epoch is returned, and its start reported beside it.
    updated, history = update_model(model, data, epochs=2, verbose=0,
                                    optimizer=Ascent(learning_rate=1.0))
    assert not history.kept_start and history.best_score < history.start_score
    after = np.asarray(updated.predict_on_batch(data.validation.inputs(data.max_len)))
    assert np.abs(after - before).max() > 1e-3
