"""`prepare_parquet` (DuckDB, out of core) gives exactly what the in-memory `prepare` gives."""

import json
import os

import numpy as np
import pandas as pd
import pytest

import keras_seqrec as ks
from keras_seqrec.data.out_of_core import parquet_files, prepare_parquet
from keras_seqrec.data.sequences import Sequences
from keras_seqrec.datasets import from_dataframe

pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")


def assert_same(a, b):
    """Every array and count of two prepared datasets is equal."""
    assert a.vocabulary == b.vocabulary
    assert a.vocabulary.id_dtype == b.vocabulary.id_dtype
    np.testing.assert_array_equal(a.users, b.users)
    for x, y in ((a.train, b.train), (a.validation.history, b.validation.history),
                 (a.test.history, b.test.history)):
        np.testing.assert_array_equal(x.values, y.values)
        np.testing.assert_array_equal(x.offsets, y.offsets)
    for x, y in ((a.validation, b.validation), (a.test, b.test)):
        np.testing.assert_array_equal(x.targets, y.targets)
        np.testing.assert_array_equal(x.users, y.users)
    np.testing.assert_array_equal(a.cold_items, b.cold_items)
    assert a.describe() == b.describe()


@pytest.fixture(scope="module")
def ml_small_parquet(tmp_path_factory):
    from keras_seqrec.datasets.movielens import bundled_path

    frame = pd.read_csv(os.path.join(bundled_path(), "ratings.csv"))
    path = tmp_path_factory.mktemp("ml") / "ratings.parquet"
    frame.to_parquet(path)
    return path


@pytest.mark.parametrize("options", [
    dict(),
    dict(session_gap=3600 * 24 * 30.0),
    dict(split="temporal", valid_start=1.4e9, test_start=1.5e9),
    dict(cold_items=0.1, seed=3),
])
def test_movielens_matches_in_memory(ml_small_parquet, options):
    columns = dict(user_col="userId", item_col="movieId", time_col="timestamp",
                   rating_col="rating")
    settings = dict(max_len=50, min_rating=3.0, min_user_interactions=5,
                    min_item_interactions=5, **options)
    expected = ks.prepare(ks.datasets.read_log(ml_small_parquet, **columns), **settings)
    got = prepare_parquet(ml_small_parquet, verbose=False, memory_limit="200MB", threads=1,
                          **columns, **settings)
    assert_same(got, expected)
    assert len(got.test) > 100


@pytest.fixture(scope="module")
def awkward_log(tmp_path_factory):
    """Three files and a marker file; string ids with spaces and leading zeros ("007" and
    "7" are two items); duplicates with different ratings; many ties in time, some across
    files; a user with one interaction and a rare item for the k-core to drop."""
    rng = np.random.default_rng(0)
    n = 6000
    items = np.array([f"{k:03d}" if k % 7 == 0 else str(k) for k in range(60)], dtype=object)
    frame = pd.DataFrame({
        "uid": rng.integers(0, 300, n).astype(str),
        "iid": items[rng.zipf(1.3, n) % 60],
        "t": rng.integers(0, 40, n),  # 40 distinct times: ties everywhere
        "stars": rng.integers(1, 6, n).astype(float),
    })
    frame.loc[::9, "uid"] = " " + frame.loc[::9, "uid"] + "\t"  # stripped by normalize_ids
    repeated = frame.sample(400, random_state=1).assign(stars=lambda f: 6 - f["stars"])
    frame = pd.concat([frame, repeated, pd.DataFrame({"uid": ["lonely"], "iid": ["rare"],
                                                      "t": [5], "stars": [5.0]})],
                      ignore_index=True)
    folder = tmp_path_factory.mktemp("awkward")
    for k, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(folder / f"part-{k}.parquet", index=False)
    (folder / "_SUCCESS").write_text("")
    return folder, frame


@pytest.mark.parametrize("options", [
    dict(min_rating=3.0, min_user_interactions=3, min_item_interactions=3),
    dict(drop_duplicates=False, min_user_interactions=2),
    dict(min_rating=2.0, session_gap=5.0),
    dict(split="temporal", valid_start=30, test_start=35, min_item_interactions=4),
])
def test_awkward_log_matches_in_memory(awkward_log, options):
    folder, frame = awkward_log
    log = from_dataframe(pd.read_parquet(folder), user_col="uid", item_col="iid",
                         time_col="t", rating_col="stars", name="awkward")
    expected = ks.prepare(log, max_len=10, **options)
    got = prepare_parquet(folder, user_col="uid", item_col="iid", time_col="t",
                          rating_col="stars", name="awkward", max_len=10, verbose=False,
                          **options)
    assert_same(got, expected)
    if options.get("drop_duplicates", True):
        assert got.describe()["duplicates_dropped"] >= 400
    assert got.vocabulary.id_dtype == "str" and "007" in got.vocabulary.ids


def test_file_order_breaks_ties_across_files(tmp_path):
    # The same user's two interactions at the same time, in two files: file order decides.
    pd.DataFrame({"user": [1, 1], "item": [10, 11], "timestamp": [0, 1]}).to_parquet(
        tmp_path / "a.parquet")
    pd.DataFrame({"user": [1, 1], "item": [12, 13], "timestamp": [1, 2]}).to_parquet(
        tmp_path / "b.parquet")
    data = prepare_parquet(tmp_path, verbose=False)
    assert data.vocabulary.to_ids(data.test.history[0]).tolist() == [10, 11, 12]
    reverse = prepare_parquet([tmp_path / "b.parquet", tmp_path / "a.parquet"], verbose=False)
    assert reverse.vocabulary.to_ids(reverse.test.history[0]).tolist() == [10, 12, 11]


def test_parquet_files_order(tmp_path):
    for name in ("b.parquet", "a.parquet", ".hidden", "_SUCCESS"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.parquet").write_bytes(b"")
    assert [os.path.relpath(f, tmp_path) for f in parquet_files(tmp_path)] == [
        "a.parquet", "b.parquet", os.path.join("sub", "c.parquet")]
    with pytest.raises(FileNotFoundError, match="No such Parquet file"):
        parquet_files([tmp_path / "missing.parquet"])


@pytest.mark.parametrize("frame, kwargs, message", [
    (pd.DataFrame({"u": [1], "item": [1], "timestamp": [1]}), {}, r"user_col='user'.*'u'"),
    (pd.DataFrame({"user": [1], "item": [1], "timestamp": [1]}), {"min_rating": 3.0},
     "needs ratings"),
    (pd.DataFrame({"user": ["a", " "], "item": [1, 2], "timestamp": [1, 2]}), {},
     "empty ids"),
    (pd.DataFrame({"user": ["a", None], "item": [1, 2], "timestamp": [1, 2]}), {},
     "1 missing values"),
    (pd.DataFrame({"user": [1, 2], "item": [1.5, 2], "timestamp": [1, 2]}), {},
     "non-integral"),
    (pd.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": ["x", "y"]}), {},
     "timestamp column 'timestamp' is VARCHAR"),
    (pd.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": [1.0, np.inf]}), {},
     "NaN, infinite"),
    (pd.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": [1.0, np.nan]}), {},
     "timestamp column 'timestamp' has 1 missing"),
    (pd.DataFrame({"user": [1, 2], "item": [1, 2], "timestamp": [1, 2]}),
     {"min_user_interactions": 3}, "k-core filtering"),
])
def test_bad_input_gets_one_clear_error(tmp_path, frame, kwargs, message):
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    with pytest.raises(ValueError, match=message):
        prepare_parquet(path, verbose=False, **kwargs)


def test_bad_memory_limit(tmp_path):
    pd.DataFrame({"user": [1], "item": [1], "timestamp": [1]}).to_parquet(tmp_path / "l.parquet")
    with pytest.raises(ValueError, match="refused memory_limit='lots'"):
        prepare_parquet(tmp_path / "l.parquet", memory_limit="lots", verbose=False)


def test_not_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    path.write_text("user,item\n1,2\n")
    with pytest.raises(ValueError, match="Cannot read the Parquet files"):
        prepare_parquet(path, verbose=False)


def test_datetime_timestamps_are_whole_seconds(tmp_path):
    times = pd.to_datetime(["2020-01-01 00:00:00.9", "1969-12-31 23:59:59.5",
                            "2020-01-01 00:00:01.0"])
    frame = pd.DataFrame({"user": [1, 1, 1], "item": [1, 2, 3], "timestamp": times})
    frame.to_parquet(tmp_path / "log.parquet")
    got = prepare_parquet(tmp_path / "log.parquet", verbose=False)
    expected = ks.prepare(from_dataframe(frame, name="log"))
    assert_same(got, expected)
    assert got.describe()["raw"]["first_timestamp"] == -1


def test_prefixes_equal_slices():
    rng = np.random.default_rng(0)
    seqs = Sequences.from_lengths(rng.integers(1, 50, 400), rng.multinomial(400, [0.02] * 50))
    rows = np.flatnonzero(rng.random(50) < 0.5)
    lengths = rng.integers(0, seqs.lengths[rows] + 1)
    got, expected = seqs.prefixes(rows, lengths), seqs.slices(rows, 0, lengths)
    assert got.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="increasing"):
        seqs.prefixes(rows[::-1], lengths[::-1])
    with pytest.raises(ValueError, match="inside"):
        seqs.prefixes(rows, seqs.lengths[rows] + 1)


def test_cli_stats_out_of_core_equal_in_memory(ml_small_parquet, capsys):
    from keras_seqrec import cli

    flags = ["stats", "--json", "--dataset", str(ml_small_parquet), "--user-col", "userId",
             "--item-col", "movieId", "--rating-col", "rating"]
    assert cli.main(flags) == 0
    in_memory = json.loads(capsys.readouterr().out)
    assert cli.main(flags + ["--out-of-core", "--memory-limit", "500MB"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == in_memory
    assert "prepare_parquet: split" in captured.err  # progress, stage by stage
    assert in_memory["settings"]["min_rating"] == 3.0


def test_cli_out_of_core_errors(tmp_path, capsys):
    from keras_seqrec import cli

    assert cli.main(["stats", "--dataset", "ml-latest-small", "--out-of-core"]) == 2
    assert "reads a Parquet file or folder" in capsys.readouterr().err
    pd.DataFrame({"user": [1], "item": [2], "time": [3]}).to_parquet(tmp_path / "log.parquet")
    assert cli.main(["stats", "--dataset", str(tmp_path / "log.parquet"), "--out-of-core",
                     "--min-rating", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "time_col='timestamp'" in err[0]


def test_a_run_trained_out_of_core_is_evaluated_the_same_way_and_exports(ml_small_parquet,
                                                                         tmp_path, capsys):
    from keras_seqrec import cli

    run = tmp_path / "run"
    assert cli.main([
        "train", "--dataset", str(ml_small_parquet), "--out-of-core", "--user-col", "userId",
        "--item-col", "movieId", "--rating-col", "rating", "--model", "gru", "--epochs", "1",
        "--embedding-dim", "8", "--hidden-dim", "8", "--max-len", "20", "--output", str(run),
        "--verbose", "0"]) == 0
    with open(run / "run.json") as f:
        record = json.load(f)
    assert record["dataset"]["out_of_core"] == {"memory_limit": "3GB"}
    capsys.readouterr()
    assert cli.main(["evaluate", "--run-dir", str(run), "-k", "10"]) == 0
    captured = capsys.readouterr()
    assert "prepare_parquet: split" in captured.err  # rebuilt through DuckDB, not pandas
    gru = record["metrics"]["gru"]["test"]
    assert f"{gru['ndcg@10']:.4f} +- {gru['ndcg@10_se']:.4f}" in captured.out
    assert cli.main(["export", "--run-dir", str(run), "--export-dir", str(tmp_path / "sm")]) == 0
    assert (tmp_path / "sm" / "1" / "saved_model.pb").exists()  # reads the run folder only
