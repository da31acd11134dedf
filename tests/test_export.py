"""SavedModel export: a self-contained TF Serving artifact over raw item ids."""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_seqrec as ks
from keras_seqrec import export as export_lib
from keras_seqrec.export import Recommender, export_saved_model
from keras_seqrec.models import last_position_model

MAX_LEN = 5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    vocab = ks.Vocabulary(list(range(100, 130)))
    model = ks.build_model("gru_attention", vocab.num_items, MAX_LEN, embedding_dim=8,
                           hidden_dim=8, attention_units=4)
    counts = np.r_[0, np.arange(vocab.num_items)[::-1]].astype(np.float64)  # item 100 most
    root = tmp_path_factory.mktemp("export") / "gru_attention"
    path = export_saved_model(model, vocab, root, top_k=5, item_counts=counts,
                              model_card={"dataset": "toy"}, titles={100: "Hundred"})
    return model, vocab, counts, str(root), path


HISTORIES = [
    ["101", "105", "110"],
    [str(i) for i in range(100, 112)],  # longer than max_len
    ["999", "101", "nope", "102"],  # unknown ids are ignored
    [],  # empty: cold start
    ["999"],  # nothing known: cold start
]


def reference_top_k(model, vocab, counts, histories, k):
    """The same answer computed outside the graph, step by step in NumPy."""
    scorer = last_position_model(model)
    out = []
    for history in histories:
        idx = vocab.lookup(history)
        known = idx[idx > 0]
        if len(known) == 0:
            scores = counts.astype(np.float32).copy()
            scores[0] = -np.inf
        else:
            x = np.zeros((1, MAX_LEN), np.int32)
            tail = known[-MAX_LEN:]
            x[0, MAX_LEN - len(tail):] = tail
            scores = np.asarray(scorer.predict_on_batch(x))[0]
        scores[known] = -np.inf  # exclude_seen
        scores[0] = -np.inf
        best = np.argsort(-scores, kind="stable")[:k]
        out.append([str(i) for i in vocab.to_ids(best)])
    return out


def test_fresh_process_without_keras_seqrec_gives_the_same_answers(exported):
    model, vocab, counts, root, path = exported
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        serve = tf.saved_model.load({path!r}).signatures["serving_default"]
        rows = json.loads(sys.argv[1])
        width = max(max(len(r) for r in rows), 1)
        padded = [r + [""] * (width - len(r)) for r in rows]
        out = serve(history=tf.constant(padded))
        print(json.dumps(out["item_ids"].numpy().astype(str).tolist()))
        assert "keras_seqrec" not in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(HISTORIES)],
                            capture_output=True, text=True, check=True)
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    rec = [list(ids) for ids, _ in Recommender(root).recommend(HISTORIES, k=5)]
    expected = reference_top_k(model, vocab, counts, HISTORIES, 5)
    assert fresh == rec == expected
    # Cold start answers with the most popular training items.
    assert fresh[3] == fresh[4] == ["100", "101", "102", "103", "104"]
    # Seen items are never recommended.
    for history, ids in zip(HISTORIES, fresh):
        assert not set(history) & set(ids)


def test_xla_compiled_export_gives_the_same_answers_and_says_so_in_its_card(exported, tmp_path):
    model, vocab, counts, _, _ = exported
    path = export_saved_model(model, vocab, tmp_path / "xla", top_k=5, item_counts=counts,
                              jit_compile=True)
    recommender = Recommender(path)
    assert recommender.model_card["serving"]["jit_compile"] is True
    rec = [list(ids) for ids, _ in recommender.recommend(HISTORIES, k=5)]
    assert rec == reference_top_k(model, vocab, counts, HISTORIES, 5)


def test_saved_model_cli_show_and_run(exported):
    _, _, _, _, path = exported
    cli = shutil.which("saved_model_cli") or os.path.join(os.path.dirname(sys.executable),
                                                          "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed")
    show = subprocess.run([cli, "show", "--all", "--dir", path], capture_output=True,
                          text=True, check=True).stdout
    block = show.split("signature_def['serving_default']")[1]
    assert "inputs['history'] tensor_info:" in block
    assert "dtype: DT_STRING" in block and "shape: (-1, -1)" in block
    assert "outputs['item_ids'] tensor_info:" in block and "shape: (-1, 5)" in block
    assert "outputs['scores'] tensor_info:" in block and "DT_FLOAT" in block
    assert "signature_def['score_all']" in show
    run = subprocess.run(
        [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
         "--input_exprs", 'history=[["101", "105", "110"]]'],
        capture_output=True, text=True, check=True,
    ).stdout
    expected = Recommender(path).recommend([HISTORIES[0]], k=5)[0][0]
    for item in expected:
        assert f"b'{item}'" in run


def test_model_card_titles_and_warmup(exported):
    _, vocab, _, root, path = exported
    rec = Recommender(root)
    card = rec.model_card
    assert card["dataset"] == "toy" and card["serving"]["top_k"] == 5
    assert card["serving"]["num_items"] == vocab.num_items
    assert {"keras_seqrec", "keras", "tensorflow"} <= set(card["versions"])
    assert rec.titles == {"100": "Hundred"}
    warmup = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    if pytest.importorskip("tensorflow_serving"):
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
                for r in tf.data.TFRecordDataset(warmup)]
        assert len(logs) == 3
        assert logs[0].predict_log.request.model_spec.signature_name == "serving_default"


def test_versions_are_immutable_and_counted(exported, tmp_path, caplog):
    import logging

    model, vocab, counts, _, _ = exported
    root = tmp_path / "m"
    with caplog.at_level(logging.INFO, logger="tensorflow"):
        first = export_saved_model(model, vocab, root, item_counts=counts)
    # TensorFlow's "Assets written to: <temporary folder>" is not passed on to the user.
    assert not [r for r in caplog.records if "Assets written" in r.getMessage()]
    second = export_saved_model(model, vocab, root, item_counts=counts)
    assert (os.path.basename(first), os.path.basename(second)) == ("1", "2")
    before = sorted(os.listdir(first))
    stamp = os.path.getmtime(os.path.join(first, "saved_model.pb"))
    with pytest.raises(FileExistsError, match="immutable"):
        export_saved_model(model, vocab, root, version=1, item_counts=counts)
    assert sorted(os.listdir(first)) == before
    assert os.path.getmtime(os.path.join(first, "saved_model.pb")) == stamp


def test_failed_export_leaves_no_version_behind(exported, tmp_path, monkeypatch):
    model, vocab, counts, _, _ = exported

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed midway")

    monkeypatch.setattr(export_lib, "_warmup_requests", crash)
    root = tmp_path / "m"
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(model, vocab, root, item_counts=counts)
    assert os.listdir(root) == []


def test_concurrent_requests_match_serial_answers(exported):
    _, _, _, root, _ = exported
    rec = Recommender(root)
    rng = np.random.default_rng(0)
    histories = [[str(x) for x in rng.integers(95, 135, size=rng.integers(0, 9))]
                 for _ in range(32)]
    serial = [[list(ids) for ids, _ in rec.recommend([h])] for h in histories]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda h: [list(ids) for ids, _ in rec.recommend([h])],
                                 histories))
    assert parallel == serial


def serve_raw(path, rows):
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    width = max(max(len(r) for r in rows), 1)
    out = serve(history=tf.constant([r + [""] * (width - len(r)) for r in rows]))
    return {k: v.numpy() for k, v in out.items()}


def test_short_of_unseen_items_the_graph_says_so_and_never_returns_padding_or_seen(exported):
    _, vocab, _, _, path = exported
    everything = [str(x) for x in vocab.ids]  # 30 items: nothing unseen is left
    rows = [everything[:27], everything, everything[:3]]
    out = serve_raw(path, rows)
    assert out["num_results"].tolist() == [3, 0, 5]
    for row, ids, scores, n in zip(rows, out["item_ids"], out["scores"], out["num_results"]):
        ids = ids.astype(str)
        assert not set(ids[:n]) & set(row) and "" not in ids[:n]
        assert np.isfinite(scores[:n]).all()
        assert (ids[n:] == "").all() and np.isneginf(scores[n:]).all()  # the sentinel
    rec = Recommender(path)
    answers = rec.recommend(rows, k=5)
    assert [len(ids) for ids, _ in answers] == [3, 0, 5]
    assert set(answers[0][0]) == set(everything[27:])


def test_exported_files_are_readable_by_other_users(exported):
    _, _, _, root, path = exported
    assert os.stat(path).st_mode & 0o777 == 0o755
    for folder, dirs, files in os.walk(path):
        for name in dirs:
            assert os.stat(os.path.join(folder, name)).st_mode & 0o777 == 0o755
        for name in files:
            assert os.stat(os.path.join(folder, name)).st_mode & 0o777 == 0o644


KILLED_EXPORT = """
import os, signal, sys
import keras, numpy as np
import keras_seqrec as ks
from keras_seqrec import export

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # a real kill -9 while the version is half written

export._warmup_requests = die
vocab = ks.Vocabulary(list(range(100, 110)))
model = ks.build_model("gru", vocab.num_items, 5, embedding_dim=4, hidden_dim=4)
export.export_saved_model(model, vocab, sys.argv[1], item_counts=np.ones(11))
"""


def test_a_killed_export_shows_no_version_and_is_cleaned_up_next_time(exported, tmp_path):
    model, vocab, counts, _, _ = exported
    root = tmp_path / "m"
    killed = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(root)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = os.listdir(root)
    assert len(left) == 1 and left[0].startswith(".tmp-1-")  # never a numeric version
    foreign = root / ".tmp-9-notours"  # not written by us: left alone
    foreign.mkdir()
    path = export_saved_model(model, vocab, root, item_counts=counts)
    assert sorted(os.listdir(root)) == [".tmp-9-notours", "1"]
    assert os.path.basename(path) == "1"


def test_ids_round_trip_as_utf8_and_whitespace_is_normalised_alike(tmp_path):
    from keras_seqrec.datasets import read_log

    log_path = tmp_path / "log.csv"
    rows = [("u1", " café ", 1), ("u1", "007", 2), ("u1", "7", 3), ("u1", "naïve,x", 4),
            ("u2", "café", 1), ("u2", "7", 2), ("u2", "007", 3), ("u2", "naïve,x", 4)]
    import pandas as pd

    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(log_path, index=False)
    log = read_log(log_path)
    assert sorted(set(log.frame["item"])) == ["007", "7", "café", "naïve,x"]
    data = ks.prepare(log, max_len=3)
    model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=4, hidden_dim=4)
    path = export_saved_model(model, data.vocabulary, tmp_path / "m", top_k=2,
                              item_counts=data.item_counts())
    rec = Recommender(path)
    (ids, _), = rec.recommend([[" café", "007 "]], k=2)  # spaces stripped in the graph too
    assert set(ids) == {"7", "naïve,x"}  # both seen items recognised and excluded
    assert all(isinstance(x, str) for x in ids)


def test_k_outside_one_to_top_k_is_refused(exported):
    _, _, _, root, _ = exported
    rec = Recommender(root)
    for k in (0, -2, 6):
        with pytest.raises(ValueError, match=r"1\.\.5"):
            rec.recommend([["101"]], k=k)


@pytest.mark.parametrize("name", ["sasrec", "gru_attention"])
def test_short_histories_are_scored_on_their_own_width_as_on_the_full_window(name, tmp_path):
    # The served graph runs the model only over the batch's longest history (bucketed), not
    # max_len columns; the scores must be those of the full left-padded window.
    tf = pytest.importorskip("tensorflow")
    keras.utils.set_random_seed(1)
    vocab = ks.Vocabulary(list(range(100, 140)))
    max_len = 12
    model = ks.build_model(name, vocab.num_items, max_len, embedding_dim=8)
    path = export_saved_model(model, vocab, tmp_path, top_k=5, exclude_seen=False,
                              item_counts=np.r_[0, np.ones(vocab.num_items)])
    score_all = tf.saved_model.load(path).signatures["score_all"]
    scorer = last_position_model(model)
    rng = np.random.default_rng(0)
    for length in (1, 2, 5, 7, 12):
        history = [str(x) for x in rng.integers(100, 140, size=length)]
        served = score_all(history=tf.constant([history]))["scores"].numpy()[0]
        window = np.zeros((1, max_len), np.int32)
        window[0, max_len - length:] = vocab.lookup(history)
        expected = np.asarray(scorer.predict_on_batch(window))[0, 1:]
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    # An empty request has no longest history; it still gets an empty answer.
    empty = score_all(history=tf.zeros((0, 3), tf.string))["scores"]
    assert tuple(empty.shape) == (0, vocab.num_items)


def test_every_weight_is_stored_once(exported):
    # Keras' ExportArchive writes each weight twice (keras-team/keras#23553), doubling the
    # SavedModel and the server's memory; the export lists each tf.Variable once.
    import tensorflow as tf

    model, _, _, _, path = exported
    stored = [shape for name, shape in tf.train.list_variables(
        os.path.join(path, "variables", "variables")) if "VARIABLE_VALUE" in name]
    total = sum(int(np.prod(shape)) for shape in stored)
    # Every weight, and at most the random layers' seed states beside them; twice would be
    # 2 * 1,251.
    assert model.count_params() <= total <= sum(int(np.prod(v.shape)) for v in model.variables)
