"""Item features aligned with the vocabulary: hand-checked on tiny frames, then the real loaders."""

import os

import numpy as np
import pandas as pd
import pytest

import keras_seqrec as ks
from keras_seqrec.data.features import (
    MISSING_TOKEN,
    ItemFeatures,
    movielens_features,
    read_id_map,
    read_item2attributes,
    read_item_features,
)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def test_tokens_are_aligned_with_vocabulary_indices_and_missing_is_explicit():
    vocab = ks.data.Vocabulary(["a", "b", "c", "d"])
    frame = pd.DataFrame({"item": ["c", "a", "zzz", "b"],  # "zzz" is not in the vocabulary
                          "brand": ["Acme", "Zed", "Acme", None],
                          "cats": [["x", "y"], "y|z", "w", []],
                          "title": ["The Big Red", None, "w", "red dog"]})
    features = ItemFeatures.from_frame(vocab, frame, categorical=["brand", "cats"],
                                       text=["title"])
    # Row 0 is padding; "d" has no row and "b" has no brand: one missing token each.
    assert features.item_tokens("brand", 1) == ["zed"]
    assert features.item_tokens("brand", 3) == ["acme"]
    assert features.categorical["brand"][[0, 2, 4]].tolist() == [[0], [MISSING_TOKEN],
                                                                 [MISSING_TOKEN]]
    assert features.item_tokens("cats", 1) == ["y", "z"]
    assert features.item_tokens("cats", 3) == ["x", "y"]
    assert features.item_tokens("cats", 2) == ["<missing>"]  # an empty list is missing
    assert features.item_tokens("title", 2) == ["red", "dog"]
    assert features.item_tokens("title", 3) == ["the", "big", "red"]
    # Tokens come from the vocabulary's items only ("w" belongs to the unknown item).
    assert "w" not in features.tokens["cats"] and features.tokens["cats"][:2] == (
        "<pad>", "<missing>")
    assert features.coverage("brand") == 0.5 and features.coverage("title") == 0.5
    assert features.describe()["cats"] == {"kind": "tokens", "width": 2, "tokens": 3,
                                           "coverage": 0.5}


def test_dense_vectors_by_raw_id_with_zeros_for_the_rest():
    vocab = ks.data.Vocabulary([10, 20, 30])
    base = ItemFeatures(vocab)
    table = pd.DataFrame([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], index=[30, 10, 99])
    features = base.with_dense("image", table)
    np.testing.assert_array_equal(features.dense["image"],
                                  [[0, 0], [3, 4], [0, 0], [1, 2]])
    assert features.has_dense["image"].tolist() == [False, True, False, True]
    assert "image" not in base.dense  # with_dense returns a copy
    pair = base.with_dense("text", (np.array([20]), np.ones((1, 3))))
    assert pair.dense["text"].shape == (4, 3) and pair.coverage("text") == pytest.approx(1 / 3)


def test_bad_feature_input_gets_one_clear_error():
    vocab = ks.data.Vocabulary([10, 20, 30])
    base = ItemFeatures(vocab)
    with pytest.raises(ValueError, match=r"1 vectors hold NaN or infinite values, the first "
                                         r"for item 20;"):
        base.with_dense("v", (np.array([10, 20]), np.array([[1.0], [np.nan]])))
    with pytest.raises(ValueError, match=r"expected a \(items, d\) matrix with one row per id"):
        base.with_dense("v", (np.array([10, 20]), np.ones(2)))
    with pytest.raises(ValueError, match=r"Item '10' appears 2 times"):
        base.with_dense("v", (np.array([10, 10]), np.ones((2, 1))))
    with pytest.raises(ValueError, match=r"No item of dense field 'v' is in the vocabulary"):
        base.with_dense("v", (np.array([1, 2]), np.ones((2, 1))))
    with pytest.raises(ValueError, match="Feature field 'v' is given twice"):
        base.with_dense("v", (np.array([10]), np.ones((1, 1)))).with_dense(
            "v", (np.array([10]), np.ones((1, 1))))
    frame = pd.DataFrame({"item": ["x", "y"], "genre": ["a", "b"]})
    with pytest.raises(ValueError, match=r"No item of the feature frame is in the vocabulary"):
        ItemFeatures.from_frame(vocab, frame, categorical=["genre"])
    with pytest.raises(ValueError, match=r"Feature columns \['brand'\] are not in the frame"):
        ItemFeatures.from_frame(vocab, frame, categorical=["brand"])
    with pytest.raises(ValueError, match=r"no item column 'movie'"):
        ItemFeatures.from_frame(vocab, frame, item="movie", categorical=["genre"])


def test_csv_item_ids_read_as_text_match_an_integer_vocabulary(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item,genres,title\n20,Drama|Comedy,Two Words\n30,,Three\n")
    features = read_item_features(path, ks.data.Vocabulary([10, 20, 30]),
                                  categorical=["genres"], text=["title"])
    assert features.item_tokens("genres", 2) == ["drama", "comedy"]
    assert features.item_tokens("genres", 3) == ["<missing>"]
    assert features.item_tokens("title", 3) == ["three"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_item_features(tmp_path / "none.csv", ks.data.Vocabulary([1]))


def test_movielens_genres_and_titles_follow_the_vocabulary():
    data = ks.prepare(ks.datasets.load("ml-latest-small"), max_len=20, min_rating=3.0,
                      min_user_interactions=5, min_item_interactions=5)
    features = movielens_features(data.items, data.vocabulary)
    index = int(data.vocabulary.lookup([260])[0])  # Star Wars: Episode IV (1977)
    assert features.item_tokens("genres", index) == ["action", "adventure", "sci-fi"]
    assert features.item_tokens("title", index)[:2] == ["star", "wars"]
    assert features.categorical["genres"].shape[0] == data.vocabulary.size
    assert features.coverage("title") == 1.0


@pytest.mark.skipif(not os.path.exists(os.path.join(SHARED, "ml-1m", "movies.dat")),
                    reason="shared ML-1M data absent")
def test_sasrec_ml1m_items_get_their_movies_through_the_id_map():
    folder = os.path.join(SHARED, "ml-1m")
    log = ks.datasets.read_sequences(os.path.join(folder, "ml-1m.txt.gz"))
    vocab = ks.data.Vocabulary(np.unique(log.frame["item"]))
    movies = ks.datasets.movielens.read_movies_dat(os.path.join(folder, "movies.dat"))
    features = movielens_features(movies, vocab,
                                  id_map=read_id_map(os.path.join(folder,
                                                                  "sas_to_original_items.txt")))
    first = int(vocab.lookup([1])[0])  # SASRec item 1 is movie 1198, Raiders of the Lost Ark
    assert features.item_tokens("title", first)[:3] == ["raiders", "of", "the"]
    assert features.item_tokens("genres", first) == ["action", "adventure"]
    assert features.coverage("genres") == 1.0


@pytest.mark.skipif(not os.path.exists(os.path.join(SHARED, "amazon-beauty",
                                                    "Beauty_item2attributes.json")),
                    reason="shared Amazon Beauty data absent")
def test_beauty_attributes_cover_every_item():
    folder = os.path.join(SHARED, "amazon-beauty")
    log = ks.datasets.read_sequences(os.path.join(folder, "Beauty.txt"))
    vocab = ks.data.Vocabulary(np.unique(log.frame["item"]))
    features = read_item2attributes(os.path.join(folder, "Beauty_item2attributes.json"), vocab)
    matrix = features.categorical["attributes"]
    assert features.describe()["attributes"] == {"kind": "tokens", "width": 6, "tokens": 637,
                                                 "coverage": 1.0}
    # The file lists 45,037 (item, attribute) pairs, 5 of them an item's attribute repeated.
    assert int((matrix[1:] > MISSING_TOKEN).sum()) == 45_032
    assert features.item_tokens("attributes", int(vocab.lookup([4])[0])) == ["1", "2", "3"]


# Feature-aware models: the item vector adds pooled feature embeddings (FeatureItemEmbedding).

def _category_walk(num_items=20, categories=4, cold=19, users=300, length=9, seed=0):
    """Raw ids 0..num_items-1 of category `id % categories`; each next item is a random item of
    the last one's category + 1, never `cold`. Returns (sequences, features)."""
    rng = np.random.default_rng(seed)
    by_category = [[i for i in range(num_items) if i % categories == c and i != cold]
                   for c in range(categories)]
    sequences = np.empty((users, length), dtype=np.int32)
    category = rng.integers(0, categories, size=users)
    for t in range(length):
        sequences[:, t] = [rng.choice(by_category[c]) for c in category]
        category = (category + 1) % categories
    vocab = ks.data.Vocabulary(list(range(num_items)))
    frame = pd.DataFrame({"item": range(num_items),
                          "category": [f"c{i % categories}" for i in range(num_items)]})
    return sequences, ItemFeatures.from_frame(vocab, frame, categorical=["category"])


def _cold_item_hits(**hyperparameters):
    """Share of histories ending in category 2 after which the never-seen item (category 3)
    is outscored by fewer than 4 items, i.e. ranks with its category's 4 seen items."""
    import keras

    sequences, features = _category_walk()
    indices = sequences + 1  # Vocabulary(range(20)) maps raw id i to index i + 1
    keras.utils.set_random_seed(0)
    model = ks.build_model("gru", 20, 8, embedding_dim=16, hidden_dim=16, dropout=0.0,
                           **hyperparameters)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ks.losses.SoftmaxCrossEntropy())
    model.fit(indices[:, :-1], indices[:, 1:], epochs=20, batch_size=32, verbose=0)
    histories = indices[sequences[:, -1] % 4 == 2]
    scores = keras.ops.convert_to_numpy(
        ks.models.common.last_position_model(model)(histories))
    cold = scores[:, 20]
    return float(np.mean((scores[:, 1:] > cold[:, None]).sum(axis=1) < 4))


def test_an_item_never_seen_in_training_is_scored_from_its_features():
    _, features = _category_walk()
    assert _cold_item_hits(item_features=features, id_embedding=False) >= 0.95
    # The same model knowing items by id only has nothing to score the new item with.
    assert _cold_item_hits() <= 0.2


def test_feature_models_check_their_inputs():
    _, features = _category_walk()
    with pytest.raises(ValueError, match=r"cover 20 items but the model has num_items=25"):
        ks.build_model("sasrec", 25, 8, item_features=features)
    with pytest.raises(ValueError, match=r"pure content model, which needs `item_features`"):
        ks.build_model("gru", 20, 8, id_embedding=False)
    with pytest.raises(ValueError, match=r"must be a keras_seqrec.data.ItemFeatures"):
        ks.build_model("gru", 20, 8, item_features={"genre": [1, 2]})
    matrix = np.zeros((21, 16), dtype="float32")
    with pytest.raises(ValueError, match=r"`id_embedding=False` removes"):
        ks.build_model("gru", 20, 8, embedding_dim=16, item_features=features,
                       id_embedding=False, item_embeddings=matrix)


def test_feature_vectors_are_the_mean_of_the_token_embeddings_plus_the_id_vector():
    from keras import ops

    from keras_seqrec.testing import synthetic_item_features

    features = synthetic_item_features(6)
    model = ks.build_model("gru", 6, 8, embedding_dim=4, hidden_dim=4, item_features=features)
    layer = model.get_layer("item_embedding")
    table = ops.convert_to_numpy(layer.item_table())
    weights = {w.path.split("/")[-1]: ops.convert_to_numpy(w) for w in layer.weights}
    expected = weights["embeddings"].copy()
    for field in ("category", "words"):
        for row, tokens in enumerate(features.categorical[field]):
            real = tokens[tokens > 0]
            if len(real):
                expected[row] += weights[f"{field}_embeddings"][real].mean(axis=0)
    present = features.has_dense["vector"]
    expected += np.where(present[:, None], features.dense["vector"] @ weights["vector_kernel"],
                         weights["vector_missing"])
    np.testing.assert_allclose(table, expected, rtol=1e-5, atol=1e-6)


def test_every_zoo_model_takes_item_features():
    takes = {name: "item_features" in ks.models.hyperparameters(name)
             for name in ks.available_models()}
    assert all(takes.values()), takes


def test_load_item_features_reads_a_csv_with_categorical_and_text_columns(tmp_path):
    from keras_seqrec.data.features import load_item_features

    data = ks.prepare(ks.datasets.load("ml-latest-small"), max_len=20, min_rating=3.0,
                      min_user_interactions=5, min_item_interactions=5)
    raw = data.vocabulary.ids[:3]
    path = tmp_path / "items.csv"
    pd.DataFrame({"item": raw, "brand": ["acme", "zed", None],
                  "blurb": ["Red shoes", "blue HAT", "red hat"]}).to_csv(path, index=False)
    features = load_item_features(path, data, text=["blurb"])
    assert features.item_tokens("brand", 1) == ["acme"]
    assert features.item_tokens("blurb", 2) == ["blue", "hat"]
    assert features.item_tokens("brand", 3) == ["<missing>"]
    with pytest.raises(ValueError, match=r"Text columns \['title'\] are not in"):
        load_item_features(path, data, text=["title"])
    assert load_item_features("movielens", data).describe()["genres"]["coverage"] > 0.99


def test_id_dropout_zeroes_whole_items_in_training_only():
    from keras import ops

    from keras_seqrec.testing import synthetic_item_features

    features = synthetic_item_features(200)
    model = ks.build_model("gru", 200, 8, embedding_dim=4, hidden_dim=4, item_features=features,
                           id_dropout=0.5)
    layer = model.get_layer("item_embedding")
    layer.embeddings.assign(np.ones((201, 4), "float32"))
    layer.output_bias.assign(np.full(201, 2.0, "float32"))
    inference, bias = (ops.convert_to_numpy(v) for v in layer.item_vectors(training=False))
    trained, trained_bias = (ops.convert_to_numpy(v) for v in layer.item_vectors(training=True))
    dropped = np.isclose(inference - trained, 1.0).all(axis=1)
    kept = np.isclose(inference, trained).all(axis=1)
    assert (dropped | kept).all()  # an item loses its whole id vector or nothing
    assert 0.35 < dropped.mean() < 0.65
    np.testing.assert_array_equal(trained_bias, np.where(dropped, 0.0, 2.0))
    np.testing.assert_array_equal(bias, np.full(201, 2.0))
    assert layer.get_config()["id_dropout"] == 0.5
    with pytest.raises(ValueError, match="`id_dropout` drops id vectors"):
        ks.build_model("gru", 200, 8, id_dropout=0.5)
