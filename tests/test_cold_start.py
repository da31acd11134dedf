"""The cold-start protocol: new items never reach training, and are evaluated apart."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import keras_seqrec as ks
from keras_seqrec.baselines import ContentBaseline, MarkovBaseline, PopularityBaseline
from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.evaluation import evaluate_recommender
from keras_seqrec.testing import deterministic_log


def _tiny():
    # Three users over items 10..15, each item in a known position.
    frame = pd.DataFrame({
        "user": [1] * 6 + [2] * 5 + [3] * 4,
        "item": [10, 11, 12, 13, 14, 15, 11, 13, 15, 10, 12, 14, 12, 13, 11],
        "timestamp": list(range(6)) + list(range(5)) + list(range(4)),
    })
    return ks.datasets.from_dataframe(frame)


def test_no_interaction_of_a_new_item_is_left_in_training_hand_checked():
    plain = ks.prepare(_tiny(), max_len=5)
    data = ks.prepare(_tiny(), max_len=5, cold_items=0.34, seed=0)  # 2 of 6 items
    cold_raw = set(data.vocabulary.to_ids(data.cold_items).tolist())
    assert len(cold_raw) == 2
    # Training: the plain split's training rows with the new items' interactions dropped.
    expected = [[i for i in row if i not in cold_raw]
                for row in [plain.vocabulary.to_ids(r).tolist() for r in plain.train]]
    assert [data.vocabulary.to_ids(r).tolist() if len(r) else [] for r in data.train] == \
        expected
    # Nothing fitted on training knows them; evaluation keeps them everywhere.
    assert (data.item_counts()[data.cold_items] == 0).all()
    markov = MarkovBaseline(data).score(data.test.inputs(5))
    pop = PopularityBaseline(data).score(data.test.inputs(5))
    backoff = pop / (pop.max() + 1.0)
    np.testing.assert_array_equal(markov[:, data.cold_items], backoff[:, data.cold_items])
    assert data.test.targets.tolist() == plain.test.targets.tolist()
    assert data.test.history.tolist() == plain.test.history.tolist()
    info = data.describe()["cold_items"]
    assert info["items"] == 2 and info["training_interactions_removed"] == sum(
        len(r) for r in plain.train) - sum(len(r) for r in data.train)
    assert info["test_cold_targets"] == int(np.isin(data.test.targets, data.cold_items).sum())


def test_the_draw_is_seeded_and_the_share_is_checked():
    log = deterministic_log(num_users=50, num_items=20)
    first = ks.prepare(log, max_len=8, cold_items=0.2, seed=3).cold_items
    assert first.tolist() == ks.prepare(log, max_len=8, cold_items=0.2, seed=3).cold_items.tolist()
    assert len(first) == 4
    assert first.tolist() != ks.prepare(log, max_len=8, cold_items=0.2, seed=4).cold_items.tolist()
    with pytest.raises(ValueError, match=r"share of the items in \[0, 1\)"):
        ks.prepare(log, max_len=8, cold_items=1.0)
    with pytest.raises(ValueError, match="is no item"):
        ks.prepare(log, max_len=8, cold_items=0.01)


def test_new_items_are_left_out_of_the_training_softmax_and_evaluated_apart():
    import keras

    data = ks.prepare(deterministic_log(num_users=200, num_items=20), max_len=10,
                      cold_items=0.1, seed=0)
    keras.utils.set_random_seed(0)
    model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=8, hidden_dim=8)
    layer = model.get_layer("item_embedding")
    before = [w.numpy().copy() for w in (layer.embeddings, layer.output_bias)]
    ks.fit_recommender(model, data, epochs=2, verbose=0)
    after = [w.numpy() for w in (layer.embeddings, layer.output_bias)]
    warm = np.setdiff1d(np.arange(1, data.vocabulary.size), data.cold_items)
    for old, new in zip(before, after):
        # A negative of the softmax would be pushed down; a left-out item does not move.
        np.testing.assert_array_equal(old[data.cold_items], new[data.cold_items])
        assert not np.allclose(old[warm], new[warm])
    parts = {t: evaluate_recommender(model, data, "test", cutoffs=(10,), targets=t)
             for t in ("all", "warm", "cold")}
    assert parts["warm"]["examples"] + parts["cold"]["examples"] == parts["all"]["examples"]
    assert parts["cold"]["examples"] == data.describe()["cold_items"]["test_cold_targets"] > 0
    weighted = (parts["warm"]["hr@10"] * parts["warm"]["examples"]
                + parts["cold"]["hr@10"] * parts["cold"]["examples"]) / parts["all"]["examples"]
    assert weighted == pytest.approx(parts["all"]["hr@10"])
    plain = ks.prepare(deterministic_log(num_users=200, num_items=20), max_len=10)
    with pytest.raises(ValueError, match="no examples with a cold target"):
        evaluate_recommender(model, plain, "test", targets="cold")


def test_the_content_baseline_recommends_a_new_item_like_its_history():
    data = ks.prepare(_tiny(), max_len=5, cold_items=0.34, seed=0)
    raw = data.vocabulary.ids
    # Items share a "kind" two by two; each new item's twin is a warm item.
    kinds = {10: "a", 11: "a", 12: "b", 13: "b", 14: "c", 15: "c"}
    features = ItemFeatures.from_frame(data.vocabulary, pd.DataFrame(
        {"item": list(kinds), "kind": list(kinds.values())}), categorical=["kind"])
    baseline = ContentBaseline(data, features)
    for cold in data.cold_items:
        twin = [i for i in kinds if i != raw[cold - 1] and kinds[i] == kinds[raw[cold - 1]]]
        history = data.vocabulary.lookup(twin)[None, :]
        scores = baseline.score(history)[0]
        same_kind = data.vocabulary.lookup([i for i in kinds if kinds[i] == kinds[twin[0]]])
        assert set(np.flatnonzero(scores == scores[1:].max())) == set(same_kind)
        assert scores[0] == -np.inf


def _new_item_mass(model, histories, new_items):
    scores = ks.models.last_position_model(model).predict(histories, verbose=0)
    scores = scores.astype(np.float64)
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities[:, new_items].sum(axis=1).mean()


def test_a_feature_aware_model_gives_new_items_their_share_and_reads_no_target():
    import keras

    from keras_seqrec.training import NewItemCalibration

    data = ks.prepare(deterministic_log(num_users=200, num_items=20), max_len=10,
                      cold_items=0.2, seed=0)
    raw = data.vocabulary.ids
    features = ItemFeatures.from_frame(data.vocabulary, pd.DataFrame(
        {"item": raw, "kind": [f"k{i % 4}" for i in range(len(raw))]}), categorical=["kind"])
    keras.utils.set_random_seed(0)
    model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=8, hidden_dim=8,
                           item_features=features, id_dropout=0.5)
    calibration = []
    ks.fit_recommender(model, data, epochs=2, verbose=0,
                       callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda e, l: (
                           calibration.append(model.get_layer("item_embedding")
                                              .output_bias.numpy()[data.cold_items].copy())))])
    bias = model.get_layer("item_embedding").output_bias.numpy()
    # One offset for every new item, the one of the kept epoch, and it gives them their
    # share of the catalogue (4 of 20 items) over the users' histories.
    assert np.unique(bias[data.cold_items]).size == 1
    assert any(np.array_equal(bias[data.cold_items], c) for c in calibration)
    histories = data.validation.inputs(data.max_len)
    assert _new_item_mass(model, histories, data.cold_items) == pytest.approx(0.2, abs=1e-3)
    # The calibration reads the histories only: other targets, the same offset.
    shuffled = dataclasses.replace(data, validation=data.validation.with_targets(
        np.random.default_rng(0).permutation(data.validation.targets)))
    first, second = (NewItemCalibration(d, model) for d in (data, shuffled))
    first.on_epoch_end(0)
    second.on_epoch_end(0)
    assert first.offset == second.offset
    # A chosen share instead of the catalogue's; none to calibrate without new items.
    ks.fit_recommender(model, data, epochs=1, verbose=0, new_item_share=0.5)
    assert _new_item_mass(model, histories, data.cold_items) == pytest.approx(0.5, abs=1e-3)
    warm = ks.prepare(deterministic_log(num_users=200, num_items=20), max_len=10)
    with pytest.raises(ValueError, match="here there are none to calibrate"):
        ks.fit_recommender(model, warm, epochs=1, verbose=0, new_item_share=0.5)


def test_calibration_takes_a_share_and_refuses_what_it_cannot_calibrate():
    from keras_seqrec.catalogue import calibrate_new_items, new_item_share_offset
    from keras_seqrec.testing import synthetic_item_features

    model = ks.build_model("gru", 10, 8, item_features=synthetic_item_features(10))
    histories = np.array([[0, 1, 2], [3, 4, 5], [0, 0, 7]])
    for share in (0.05, 0.5, 0.9):
        offset = calibrate_new_items(model, histories, new_items=[9, 10], share=share)
        bias = model.get_layer("item_embedding").output_bias.numpy()
        assert bias[9] == bias[10] == pytest.approx(offset)
        assert _new_item_mass(model, histories, [9, 10]) == pytest.approx(share, abs=1e-4)
    calibrate_new_items(model, histories, new_items=[9, 10])  # default: 2 of 10 items
    assert _new_item_mass(model, histories, [9, 10]) == pytest.approx(0.2, abs=1e-4)
    with pytest.raises(ValueError, match=r"share in \(0, 1\)"):
        new_item_share_offset(np.zeros((1, 4)), np.array([0, 0, 1, 1], bool), 1.0)
    with pytest.raises(ValueError, match="at least one new and one trained"):
        new_item_share_offset(np.zeros((1, 4)), np.zeros(4, bool), 0.5)
    with pytest.raises(ValueError, match=r"must lie in 1\.\.10"):
        calibrate_new_items(model, histories, new_items=[0, 3])
    with pytest.raises(ValueError, match="Only a feature-aware model"):
        calibrate_new_items(ks.build_model("gru", 10, 8), histories, new_items=[9])
