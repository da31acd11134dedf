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


def test_versions_are_immutable_and_counted(exported, tmp_path):
    model, vocab, counts, _, _ = exported
    root = tmp_path / "m"
    first = export_saved_model(model, vocab, root, item_counts=counts)
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
