"""Data layer: loading, filtering, vocabulary, splits and the training pipeline."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from keras_seqrec import Sequences, Vocabulary, datasets, prepare
from keras_seqrec.datasets import from_dataframe, read_log, read_sequences


def hand_log():
    # Three users, written out of time order; user "u2" has a timestamp tie (items "a" then "c",
    # both at t=5) that must keep file order.
    rows = [
        ("u1", "b", 30), ("u1", "a", 10), ("u1", "c", 20), ("u1", "d", 40),
        ("u2", "a", 5), ("u2", "c", 5), ("u2", "b", 7),
        ("u3", "d", 1), ("u3", "a", 2),
    ]
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return from_dataframe(df)


def test_hand_built_log_sequences_vocabulary_and_leave_one_out():
    data = prepare(hand_log(), max_len=3)
    # Vocabulary: sorted raw ids -> a=1, b=2, c=3, d=4; 0 is padding.
    assert data.vocabulary.ids.tolist() == ["a", "b", "c", "d"]
    assert data.users.tolist() == ["u1", "u2", "u3"]
    # Time-ordered: u1 = a c b d, u2 = a c b (tie kept in file order), u3 = d a.
    # Leave-one-out: u1 train [a, c], valid target b, test target d (input a c b);
    # u2 train [a], valid c, test b; u3 has 2 items: too short, trains on [d, a], not evaluated.
    assert data.train.tolist() == [[1, 3], [1], [4, 1]]
    assert data.validation.users.tolist() == ["u1", "u2"]
    assert data.validation.history.tolist() == [[1, 3], [1]]
    assert data.validation.targets.tolist() == [2, 3]
    assert data.test.history.tolist() == [[1, 3, 2], [1, 3]]
    assert data.test.targets.tolist() == [4, 2]
    assert data.info["split"]["users_too_short_to_split"] == 1
    # Model inputs are left-padded to max_len = 3.
    assert data.test.inputs(3).tolist() == [[1, 3, 2], [0, 1, 3]]
    # Training pairs: input s[:-1], target s[1:], left padded; u2 has one item so no pair.
    inputs, targets = data.training_arrays()
    assert inputs.tolist() == [[0, 0, 1], [0, 0, 4]]
    assert targets.tolist() == [[0, 0, 3], [0, 0, 1]]


def test_truncation_keeps_most_recent_items():
    seqs = Sequences.from_lists([[1, 2, 3, 4, 5], [6]])
    assert seqs.pad(3).tolist() == [[3, 4, 5], [0, 0, 6]]
    log = from_dataframe(pd.DataFrame({"user": [1] * 6, "item": range(10, 16),
                                       "timestamp": range(6)}))
    data = prepare(log, max_len=2)
    # Items 10..15 -> indices 1..6; train = 1..4. Windows of max_len + 1 = 3 items are cut from
    # the end, overlapping by one: [2, 3, 4] and [1, 2]; every item but the first is a target
    # exactly once.
    assert data.training_windows().tolist() == [[2, 3, 4], [1, 2]]
    inputs, targets = data.training_arrays()
    assert inputs.tolist() == [[2, 3], [0, 1]] and targets.tolist() == [[3, 4], [0, 2]]
    assert data.test.inputs(2).tolist() == [[4, 5]]


def test_training_windows_cover_every_target_once(ml_small_data):
    inputs, targets = ml_small_data.training_arrays()
    lengths = ml_small_data.train.lengths
    assert (targets != 0).sum() == (lengths - 1)[lengths >= 2].sum()
    # Each target's input position holds the item right before it in the user's sequence.
    assert ((inputs != 0) | (targets == 0)).all()


def test_vocabulary_round_trip_and_padding(tmp_path):
    for ids in ([30, 10, 20], ["x", "y", "10"]):
        vocab = Vocabulary(ids)
        idx = vocab.lookup(ids)
        assert 0 not in idx.tolist()
        assert sorted(idx.tolist()) == [1, 2, 3]
        assert vocab.to_ids(idx).tolist() == list(ids)
        vocab.save(tmp_path / "v.json")
        assert Vocabulary.load(tmp_path / "v.json") == vocab
    int_vocab = Vocabulary([5, 7])
    # String forms of int ids map to the same items; unknown ids map to padding.
    assert int_vocab.lookup(["7", "5", "nope", "9"]).tolist() == [2, 1, 0, 0]
    with pytest.raises(IndexError, match="0 is padding"):
        int_vocab.to_ids([0])


def test_k_core_is_iterative_and_min_rating_filters():
    # Item z has 2 users (v, w); dropping user w (1 interaction) leaves z with 1 < 2, so z goes
    # too, which leaves user v with 1 item and v goes as well.
    df = pd.DataFrame(
        {"user": ["u", "u", "v", "v", "w", "x", "x"],
         "item": ["a", "b", "a", "z", "z", "a", "b"],
         "timestamp": range(7),
         "rating": [5, 5, 5, 5, 5, 2, 5]}
    )
    log = from_dataframe(df, rating_col="rating")
    data = prepare(log, min_user_interactions=2, min_item_interactions=2)
    assert data.users.tolist() == ["u", "x"]
    assert data.vocabulary.ids.tolist() == ["a", "b"]
    # min_rating=3 drops x's rating of a: then x has 1 item and goes, a and b keep only u and
    # go, and u is left with nothing: the k-core step emptied the log.
    with pytest.raises(ValueError, match="k-core"):
        prepare(log, min_rating=3, min_user_interactions=2, min_item_interactions=2)
    data = prepare(log, min_rating=3)
    assert data.info["filtered"]["interactions"] == 6


def test_temporal_split_targets_after_cut_with_earlier_history_only():
    df = pd.DataFrame({"user": [1, 1, 1, 1, 2, 2, 3],
                       "item": [10, 11, 12, 13, 10, 12, 11],
                       "timestamp": [1, 2, 5, 9, 3, 6, 8]})
    data = prepare(from_dataframe(df), split="temporal", valid_start=5, test_start=8)
    # Items 10, 11, 12, 13 -> 1..4. Train: before t=5. Validation: t in [5, 8). Test: t >= 8.
    assert data.train.tolist() == [[1, 2], [1], []]
    assert data.validation.targets.tolist() == [3, 3]
    assert data.validation.history.tolist() == [[1, 2], [1]]
    # User 1's test target (13 at t=9) sees the validation item 12 before it; user 3's only
    # interaction has no history and is dropped.
    assert data.test.targets.tolist() == [4]
    assert data.test.history.tolist() == [[1, 2, 3]]
    assert data.info["split"]["targets_dropped_without_history"] == 1


def test_training_batches_hold_every_pair_once_and_shuffle_with_the_seed():
    log = from_dataframe(pd.DataFrame({"user": np.repeat(np.arange(10), 5),
                                       "item": (np.repeat(np.arange(10), 5)
                                                + np.tile(np.arange(5), 10)) % 7,
                                       "timestamp": np.tile(np.arange(5), 10)}))
    data = prepare(log, max_len=4)

    def rows(seed):
        batches = data.training_batches(batch_size=3, seed=seed)
        out = [batches[i] for i in range(len(batches))]
        # Each batch is trimmed to its own width; pad back on the left to compare rows.
        return out, [tuple(np.pad(r, (4 - len(r), 0))) for x, _ in out for r in x]

    batches, first = rows(1)
    assert sorted(len(x) for x, _ in batches) == [1, 3, 3, 3]  # the last partial batch is kept
    inputs, _ = data.training_arrays()
    assert sorted(first) == sorted(map(tuple, inputs))  # every training pair exactly once
    assert rows(1)[1] == first and rows(2)[1] != first
    assert all(x.dtype == np.int32 for x, _ in batches)


def test_bucketed_widths_cover_each_batch_and_stay_few_and_tight():
    from keras_seqrec.data.pipeline import BucketedBatches, bucket_length

    for max_len in (5, 50, 200):
        widths = [bucket_length(n, max_len) for n in range(1, max_len + 1)]
        assert all(n <= w <= max_len for n, w in zip(range(1, max_len + 1), widths))
        assert widths == sorted(widths) and len(set(widths)) <= 8 + 2 + 2 * 5
    # Short sequences (most of a sparse log) are padded by at most a third, not to 8.
    assert [bucket_length(n, 50) for n in (1, 2, 3, 4, 5, 7)] == [1, 2, 3, 4, 6, 8]
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 51, size=300)
    x = np.zeros((300, 50), dtype=np.int32)
    for row, n in enumerate(lengths):
        x[row, 50 - n:] = rng.integers(1, 9, size=n)
    batches = BucketedBatches(x, x, batch_size=16, max_len=50, seed=0)
    kept = 0
    for i in range(len(batches)):
        inputs, _ = batches[i]
        rows = batches.batches[i]
        assert inputs.shape[1] == bucket_length(lengths[rows].max(), 50)
        kept += int((inputs != 0).sum())
    assert kept == int(lengths.sum())  # no real item is cut


def test_fit_input_keeps_each_batch_shape_and_has_no_autotune_thread():
    # tf.data's autotuning thread made every fit wait 6-50 s while its iterator was destroyed.
    import tensorflow as tf

    from keras_seqrec.data.pipeline import as_fit_input

    log = from_dataframe(pd.DataFrame({"user": np.repeat(np.arange(10), [2, 5] * 5),
                                       "item": np.arange(35) % 6,
                                       "timestamp": np.arange(35)}))
    batches = prepare(log, max_len=4).training_batches(batch_size=4, seed=0)
    dataset, steps = as_fit_input(batches)
    assert steps == len(batches) and dataset.options().autotune.enabled is False
    expected = [tuple(np.shape(batches[i][0])) for i in range(steps)]  # before a reshuffle
    shapes = [tuple(x.shape) for x, _ in dataset.take(2 * steps)]
    assert shapes[:steps] == expected and len(set(shapes)) > 1  # lengths vary by batch
    assert isinstance(dataset.element_spec[0], tf.TensorSpec)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"user_col": "userId"}, r"user_col='userId'.*columns \['user', 'item', 'timestamp'\]"),
        ({"time_col": "ts"}, "time_col='ts'"),
    ],
)
def test_missing_columns_are_named(kwargs, message):
    df = pd.DataFrame({"user": [1], "item": [2], "timestamp": [3]})
    with pytest.raises(ValueError, match=message):
        from_dataframe(df, **kwargs)


def test_bad_values_get_clear_errors():
    ok = {"user": [1, 2], "item": [3, 4], "timestamp": [5, 6]}
    with pytest.raises(ValueError, match="must be numeric"):
        from_dataframe(pd.DataFrame({**ok, "timestamp": ["yesterday", "today"]}))
    with pytest.raises(ValueError, match="missing values"):
        from_dataframe(pd.DataFrame({**ok, "timestamp": [5, None]}))
    with pytest.raises(ValueError, match="item id column 'item' has 1 missing"):
        from_dataframe(pd.DataFrame({**ok, "item": [3, None]}))
    with pytest.raises(ValueError, match="user id column"):
        from_dataframe(pd.DataFrame({**ok, "user": [np.nan, 1]}))
    log = from_dataframe(pd.DataFrame(ok))
    with pytest.raises(ValueError, match="max_len"):
        prepare(log, max_len=1)
    with pytest.raises(ValueError, match="after min_rating"):
        prepare(from_dataframe(pd.DataFrame({**ok, "r": [1, 2]}), rating_col="r"),
                min_rating=3)
    with pytest.raises(ValueError, match="needs ratings"):
        prepare(log, min_rating=3)


def test_datetime_timestamps_are_converted():
    df = pd.DataFrame({"user": [1, 1], "item": [1, 2],
                       "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    log = from_dataframe(df)
    assert log.frame["timestamp"].tolist() == [1577836800, 1577923200]


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match=r"ml-100k.*Did you mean 'ml-1m'"):
        datasets.load("ml-1mm")


def test_missing_local_release_says_where_to_put_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="ratings.dat"):
        datasets.load("ml-1m", data_dir=tmp_path, download=False)


def test_generic_csv_and_parquet_logs(tmp_path):
    df = pd.DataFrame({"uid": ["a", "a", "b"], "iid": [1, 2, 1], "ts": [1, 2, 3]})
    df.to_csv(tmp_path / "log.csv", index=False)
    df.to_parquet(tmp_path / "log.parquet")
    for name in ("log.csv", "log.parquet"):
        log = read_log(tmp_path / name, user_col="uid", item_col="iid", time_col="ts")
        assert log.frame["item"].tolist() == [1, 2, 1]
        assert log.num_users == 2


def test_bundled_ml_latest_small_matches_source_counts(ml_small):
    assert (ml_small.num_users, ml_small.num_items, len(ml_small)) == (610, 9724, 100836)
    assert ml_small.items.loc[1, "title"] == "Toy Story (1995)"
    assert "Comedy" in ml_small.items.loc[1, "genres"]
    import os

    # The license must travel with the bundled data.
    assert os.path.exists(os.path.join(datasets.bundled_path(), "README.txt"))


def test_shared_ml_100k_counts():
    log = datasets.load("ml-100k", data_dir=shared_path("ml-100k"), download=False)
    assert (log.num_users, log.num_items, len(log)) == (943, 1682, 100000)
    assert log.items.loc[1, "title"] == "Toy Story (1995)"


def assert_split_is_leak_free(data, frame=None):
    """Targets are each user's last (test) / second-to-last (validation) item, never in input."""
    test, valid = data.test, data.validation
    assert len(test) == len(valid) > 0
    n = len(test)
    # The test input is the validation input plus the validation target.
    assert np.array_equal(test.history.lengths, valid.history.lengths + 1)
    assert np.array_equal(test.history.last(), valid.targets)
    # Training sequences are exactly the validation inputs for evaluated users.
    rows = np.searchsorted(data.users, test.users)
    assert data.train.take(rows).tolist() == valid.history.tolist()
    if frame is not None:
        # The test target is the user's last interaction in time (file order breaks ties).
        last = frame.groupby("user", sort=True).tail(1).set_index("user")["item"]
        expected = data.vocabulary.lookup(last.loc[test.users].to_numpy())
        assert np.array_equal(test.targets, expected)
    assert (test.targets > 0).all() and (valid.targets > 0).all()
    assert n == len(np.unique(test.users))


def test_leave_one_out_on_ml_latest_small(ml_small):
    data = prepare(ml_small)
    frame = ml_small.frame.sort_values(["user", "timestamp"], kind="stable")
    assert_split_is_leak_free(data, frame)
    assert data.info["filtered"] == {"users": 610, "items": 9724, "interactions": 100836}


def test_leave_one_out_on_amazon_beauty():
    log = read_sequences(shared_path("amazon-beauty", "Beauty.txt"))
    assert (log.num_users, log.num_items, len(log)) == (22363, 12101, 198502)
    data = prepare(log, max_len=50)
    frame = log.frame  # already in time order
    assert_split_is_leak_free(data, frame)
    assert data.train.lengths.max() == 202  # longest sequence 204 minus the two targets


def test_ml_1m_sasrec_file_counts():
    log = read_sequences(shared_path("ml-1m", "ml-1m.txt.gz"))
    assert (log.num_users, log.num_items, len(log)) == (6040, 3416, 999611)


def test_duplicate_rows_are_dropped_and_counted_unless_kept():
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("u", "d", 4)]
    twice = from_dataframe(pd.DataFrame(rows + rows, columns=["user", "item", "timestamp"]))
    data = prepare(twice, max_len=5)
    assert data.describe()["duplicates_dropped"] == 4
    # Without dropping, the doubled log made the validation target equal the test target.
    assert data.validation.targets.tolist() == data.vocabulary.lookup(["c"]).tolist()
    assert data.test.targets.tolist() == data.vocabulary.lookup(["d"]).tolist()
    kept = prepare(twice, max_len=5, drop_duplicates=False)
    assert kept.describe()["duplicates_dropped"] == 0
    assert kept.validation.targets.tolist() == kept.test.targets.tolist()


def test_ties_in_time_in_file_order_or_seeded_random_order():
    rows = [(u, item, 7) for u in range(40) for item in ("x", "y", "z")]
    log = from_dataframe(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    z = int(prepare(log, max_len=3).vocabulary.lookup(["z"])[0])
    assert (prepare(log, max_len=3).test.targets == z).all()  # file order: always the last
    shuffled = prepare(log, max_len=3, tie_break="random", seed=1)
    assert 0 < (shuffled.test.targets == z).mean() < 1
    again = prepare(log, max_len=3, tie_break="random", seed=1)
    assert np.array_equal(shuffled.test.targets, again.test.targets)
    assert shuffled.describe()["settings"]["tie_break"] == "random"
    with pytest.raises(ValueError, match="tie_break"):
        prepare(log, tie_break="alphabetical")


def test_sessions_with_leave_one_out_never_train_on_the_future():
    # User 1: session A at t=0..3, then session B a day later; user 2: one session.
    rows = [(1, i, t) for i, t in zip("abcd", range(4))]
    rows += [(1, i, 86400 + t) for i, t in zip("efgh", range(4))]
    rows += [(2, i, t) for i, t in zip("aceg", range(4))]
    log = from_dataframe(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    data = prepare(log, max_len=5, session_gap=1800)
    # Only each user's last session is split; the earlier one trains whole.
    assert data.test.users.tolist() == ["1:1", "2:0"]
    assert data.validation.users.tolist() == ["1:1", "2:0"]
    assert data.info["split"]["earlier_sessions_in_training"] == 1
    # Every training interaction of user 1 happens before user 1's validation target.
    first = dict(zip(data.users, data.train.tolist()))
    assert first["1:0"] == data.vocabulary.lookup(list("abcd")).tolist()
    assert first["1:1"] == data.vocabulary.lookup(list("ef")).tolist()


def test_ids_are_read_as_text_so_raw_ids_round_trip(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n001,007,1\n001,7,2\n1, 7 ,3\n")
    frame = read_log(path).frame
    assert frame["user"].tolist() == ["001", "001", "1"]
    assert frame["item"].tolist() == ["007", "7", "7"]  # stripped, never merged with 007
    plain = tmp_path / "plain.csv"
    plain.write_text("user,item,timestamp\n1,10,1\n2,11,2\n")
    assert read_log(plain).frame["item"].dtype == np.int64  # canonical ints stay ints
    seq = tmp_path / "seq.txt"
    seq.write_text("1 007 7\n")
    assert read_sequences(seq).frame["item"].tolist() == ["007", "7"]


def write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif str(path).lower().endswith(".gz"):
        import gzip

        with gzip.open(path, "wt") as f:
            f.write(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("name,content,message", [
    ("empty.csv", "", "is empty"),
    ("header.csv", "user,item,timestamp\n", "has a header .* but no interactions"),
    ("binary.csv", bytes(range(256)) * 4, "binary file"),
    ("latin1.csv", "user,item,timestamp\n1,caf\xe9,1\n".encode("latin-1"), "not UTF-8"),
    ("time.csv", "user,item,timestamp\n1,10,5\n1,11,6\n1,12,soon\n",
     "row 2 holds 'soon'"),
    ("lines.csv", "1 2 3\n4 5 6\n", "named like a csv file but .* sequence file"),
    ("tabs.txt", "1\t2\n1\t3\n", "headerless TSV log or a `user item ...` sequence"),
])
def test_unreadable_files_get_one_clear_error(tmp_path, name, content, message):
    with pytest.raises(ValueError, match=message):
        datasets.read_interactions(write(tmp_path / name, content))


def test_format_comes_from_content_and_can_be_forced(tmp_path):
    log = "user,item,timestamp\n1,10,5\n1,11,6\n2,10,7\n"
    # A comma-separated log named .txt was read as `user item ...` lines: garbage items.
    assert datasets.read_interactions(write(tmp_path / "log.txt", log)).num_items == 2
    assert datasets.detect_format(write(tmp_path / "LOG.CSV.GZ", log)) == "csv"
    assert datasets.read_interactions(tmp_path / "LOG.CSV.GZ").num_items == 2
    assert datasets.detect_format(write(tmp_path / "seq.TXT.GZ", "1 5 6\n")) == "sequences"
    tabs = write(tmp_path / "tabs.txt", "1\t2\n1\t3\n")
    assert datasets.read_interactions(tabs, format="sequences").num_items == 2
    with pytest.raises(IsADirectoryError, match="is a directory"):
        datasets.read_interactions(tmp_path)


def test_infinite_timestamps_are_named_not_an_overflow():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 3], "timestamp": [1.0, np.inf, 2.0]})
    with pytest.raises(ValueError, match=r"infinite .*\(first at row 1"):
        from_dataframe(df)


@pytest.mark.parametrize("name", ["ml-latest-small", "ml-100k", "amazon-beauty", "ml-1m"])
def test_benchmark_datasets_have_no_repeat_targets_or_duplicate_rows(name):
    # The README relies on this: masking the whole history (a repeat target is a miss) and
    # dropping duplicate rows leave every committed benchmark result as it was.
    from keras_seqrec.evaluation import repeat_targets

    if name == "ml-latest-small":
        log = datasets.load(name)
    elif name == "ml-100k":
        log = datasets.load(name, data_dir=shared_path("ml-100k"), download=False)
    elif name == "amazon-beauty":
        log = read_sequences(shared_path("amazon-beauty", "Beauty.txt"))
    else:
        log = read_sequences(shared_path("ml-1m", "ml-1m.txt.gz"))
    movielens = dict(min_rating=3.0, min_user_interactions=5, min_item_interactions=5)
    data = prepare(log, max_len=50, **(movielens if name.startswith("ml-") and name != "ml-1m"
                                       else {}))
    assert data.describe()["duplicates_dropped"] == 0
    assert not repeat_targets(data.validation).any() and not repeat_targets(data.test).any()
