"""New items added to a trained feature-aware model and served without retraining."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

import keras_seqrec as ks
from keras_seqrec.catalogue import add_items
from keras_seqrec.data.features import ItemFeatures
from keras_seqrec.export import export_saved_model


def category_log(seed=0, start=0, extra=()):
    """20 items in 4 categories (raw id mod 4), each next item one of the next category;
    `extra` items join their category's choices (raw id mod 4 too)."""
    rng = np.random.default_rng(seed)
    users, length = 300, 10
    category = rng.integers(0, 4, size=users)
    pool = np.r_[np.arange(20), np.asarray(extra, dtype=int)]
    rows = []
    for t in range(length):
        rows += [(u, int(rng.choice(pool[pool % 4 == c])), start + t)
                 for u, c in enumerate(category)]
        category = (category + 1) % 4
    return ks.datasets.from_dataframe(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


@pytest.fixture(scope="module")
def trained():
    data = ks.prepare(category_log(), max_len=8)
    frame = pd.DataFrame({"item": range(20), "category": [f"c{i % 4}" for i in range(20)]})
    features = ItemFeatures.from_frame(data.vocabulary, frame, categorical=["category"])
    keras.utils.set_random_seed(0)
    model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=16, hidden_dim=16,
                           dropout=0.0, item_features=features)
    ks.fit_recommender(model, data, epochs=8, learning_rate=1e-2, verbose=0)
    return data, features, model


def test_new_items_get_scores_from_their_features_and_old_scores_do_not_move(trained):
    data, features, model = trained
    grown_features = features.with_new_items(
        pd.DataFrame({"item": [99, 98], "category": ["c3", "c1"]}))
    grown = add_items(model, grown_features)
    assert grown.output_shape[-1] == data.vocabulary.size + 2
    x = data.test.inputs(data.max_len)[:50]
    old = keras.ops.convert_to_numpy(model(x))
    new = keras.ops.convert_to_numpy(grown(x))
    np.testing.assert_allclose(new[..., :data.vocabulary.size], old, rtol=1e-5, atol=1e-5)
    # After a history ending in category 2, the next item is of category 3: the new item of
    # category 3 ranks among them, the new one of category 1 does not.
    last = data.vocabulary.to_ids(x[:, -1])
    scorer = ks.models.common.last_position_model(grown)
    scores = keras.ops.convert_to_numpy(scorer(x[last % 4 == 2]))
    top = np.argsort(-scores, axis=1)[:, :6]  # the 5 seen items of category 3 + the new one
    c3, c1 = grown_features.vocabulary.lookup([99, 98])
    assert (top == c3).any(axis=1).mean() >= 0.9
    assert not (top == c1).any()


def test_a_new_item_is_served_from_the_next_saved_model_version(trained, tmp_path):
    data, features, model = trained
    grown_features = features.with_new_items(pd.DataFrame({"item": [99], "category": ["c3"]}))
    root = tmp_path / "gru"
    export_saved_model(model, data.vocabulary, root, top_k=6, item_counts=data.item_counts())
    path = export_saved_model(add_items(model, grown_features), grown_features.vocabulary,
                              root, top_k=6, item_counts=np.r_[data.item_counts(), 0])
    assert path.endswith("2")
    history = [["0", "1", "2", "6", "10"], ["3", "4", "5", "6"],  # both end in category 2
               ["99"],  # only a new item: answered through its features (category 3 -> 0)
               ["nope"]]  # nothing known: the most popular training items
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        serve = tf.saved_model.load({path!r}).signatures["serving_default"]
        rows = json.loads(sys.argv[1])
        width = max(len(r) for r in rows)
        out = serve(history=tf.constant([r + [""] * (width - len(r)) for r in rows]))
        print(json.dumps(out["item_ids"].numpy().astype(str).tolist()))
        assert "keras_seqrec" not in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(history)],
                            capture_output=True, text=True, check=True)
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert all("99" in ids for ids in answers[:2]), answers
    assert sum(int(i) % 4 == 0 for i in answers[2]) >= 5, answers[2]
    popular = data.vocabulary.to_ids(np.argsort(-data.item_counts()[1:], kind="stable")[:6] + 1)
    assert answers[3] == [str(i) for i in popular]


def test_only_feature_aware_tied_models_can_take_new_items(trained):
    data, features, _ = trained
    grown = features.with_new_items(pd.DataFrame({"item": [99], "category": ["c3"]}))
    plain = ks.build_model("gru", data.num_items, data.max_len)
    with pytest.raises(ValueError, match="knows items by id only"):
        add_items(plain, grown)
    untied = ks.build_model("gru", data.num_items, data.max_len, item_features=features,
                            tie_embeddings=False)
    with pytest.raises(ValueError, match="untied output layer"):
        add_items(untied, grown)
    model = ks.build_model("gru", data.num_items, data.max_len, item_features=features)
    with pytest.raises(ValueError, match="not more than the model's"):
        add_items(model, features)
    with pytest.raises(ValueError, match="already in the catalogue"):
        features.with_new_items(pd.DataFrame({"item": [3], "category": ["c3"]}))


def test_an_update_starts_new_items_from_their_features_and_trains_them(trained):
    from keras_seqrec.update import update_dataset, update_model

    data, features, model = trained
    grown_features = features.with_new_items(pd.DataFrame({"item": [99], "category": ["c3"]}))
    # New interactions: the same users go on, and item 99 joins category 3's choices.
    data2 = update_dataset(category_log(), category_log(seed=1, start=100, extra=[99]),
                           grown_features.vocabulary, max_len=8)
    assert data2.vocabulary == grown_features.vocabulary
    updated, _ = update_model(model, data2, features=grown_features, epochs=2,
                              learning_rate=1e-2, verbose=0)
    new = grown_features.vocabulary.lookup([99])[0]
    layer = updated.get_layer("item_embedding")
    tokens = keras.ops.convert_to_numpy(layer._tokens["category"])
    np.testing.assert_array_equal(tokens[new], tokens[grown_features.vocabulary.lookup([3])[0]])
    x = data2.test.inputs(data2.max_len)
    last = data2.vocabulary.to_ids(x[:, -1])
    after_c2 = x[(last % 4 == 2) & (x[:, -1] != new)]
    scores = keras.ops.convert_to_numpy(
        ks.models.common.last_position_model(updated)(after_c2))
    top = np.argsort(-scores, axis=1)[:, :6]  # category 3's five old items and 99
    assert (top == new).any(axis=1).mean() >= 0.9
    assert model.output_shape[-1] == data.vocabulary.size  # the trained model is untouched


def test_added_items_can_be_given_their_share_over_the_users_histories(trained):
    data, features, model = trained
    grown_features = features.with_new_items(
        pd.DataFrame({"item": [99, 98], "category": ["c3", "c1"]}))
    x = data.test.inputs(data.max_len)
    plain = add_items(model, grown_features)
    grown = add_items(model, grown_features, histories=x, share=0.3)
    layer = grown.get_layer("item_embedding")
    new = np.arange(data.vocabulary.size, data.vocabulary.size + 2)
    scores = keras.ops.convert_to_numpy(ks.models.common.last_position_model(grown)(x))
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    assert (p[:, new].sum(axis=1) / p.sum(axis=1)).mean() == pytest.approx(0.3, abs=1e-3)
    # Only the new items' bias moved, by one offset; their order per history is kept.
    before = plain.get_layer("item_embedding").output_bias.numpy()
    after = layer.output_bias.numpy()
    np.testing.assert_array_equal(before[:data.vocabulary.size], after[:data.vocabulary.size])
    assert np.ptp(after[new] - before[new]) < 1e-6
    old_scores = keras.ops.convert_to_numpy(ks.models.common.last_position_model(plain)(x))
    np.testing.assert_array_equal(np.argmax(old_scores[:, new], axis=1),
                                  np.argmax(scores[:, new], axis=1))
