"""Explanations from the SavedModel: one weight per history item, with raw ids."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from scipy import stats

import keras_seqrec as ks
from keras_seqrec.export import Recommender, export_saved_model
from keras_seqrec.models import attention_weights_model, last_position_model

MAX_LEN = 6
VOCAB = ks.Vocabulary([str(i) for i in range(100, 124)])
HISTORIES = [
    ["101", "105", "unknown", "110"],
    [str(i) for i in range(100, 110)],  # longer than max_len: the oldest four get 0
    ["107"],
    ["nope"],  # nothing known: popular items, no weights
]


def small(name, **options):
    keras.utils.set_random_seed(2)
    model = ks.build_model(name, VOCAB.num_items, MAX_LEN, embedding_dim=8, **options)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(np.asarray(w.numpy()) + rng.normal(0, 0.3, w.shape).astype("float32"))
    return model


def export(model, tmp_path):
    counts = np.r_[0, np.arange(VOCAB.num_items)[::-1]].astype(np.float64)
    return export_saved_model(model, VOCAB, tmp_path / model.name, top_k=5, item_counts=counts)


def window(history):
    """The model's input for a history: its last MAX_LEN known items, left-padded."""
    known = [i for i in VOCAB.lookup(history) if i > 0][-MAX_LEN:]
    return np.array([[0] * (MAX_LEN - len(known)) + known], dtype=np.int32), len(known)


def in_window(history):
    """True at the history items the model reads: known ids among the last MAX_LEN of them."""
    known = VOCAB.lookup(history) > 0
    return known & (np.cumsum(known[::-1])[::-1] <= MAX_LEN)


@pytest.mark.parametrize("attend_to", ["states", "items"])
def test_gru_attention_explains_with_its_attention_at_the_last_position(tmp_path, attend_to):
    model = small("gru_attention", attend_to=attend_to)
    answers = Recommender(export(model, tmp_path)).explain(HISTORIES)
    attention = attention_weights_model(model)
    for history, (ids, _, weights) in zip(HISTORIES, answers):
        assert weights.shape == (len(history),)
        x, n = window(history)
        last = np.asarray(attention.predict_on_batch(x))[0, -1, MAX_LEN - n:]
        inside = in_window(history)
        np.testing.assert_allclose(weights[inside], last, atol=1e-6)
        np.testing.assert_array_equal(weights[~inside], 0.0)
        if n:
            assert abs(weights.sum() - 1.0) < 1e-5
    assert list(answers[3][0]) == ["100", "101", "102", "103", "104"]


def test_other_models_explain_by_leaving_each_item_out(tmp_path):
    model = small("sasrec")
    scorer = last_position_model(model)
    answers = Recommender(export(model, tmp_path)).explain(HISTORIES)
    for history, (ids, _, weights) in zip(HISTORIES[:3], answers):
        top = VOCAB.lookup([ids[0]])[0]
        inside = in_window(history)
        read = [h for h, keep in zip(history, inside) if keep]
        full = scorer.predict_on_batch(window(read)[0])[0, top]
        expected = [full - scorer.predict_on_batch(window(read[:j] + read[j + 1:])[0])[0, top]
                    for j in range(len(read))]
        np.testing.assert_allclose(weights[inside], expected, atol=1e-5)
        np.testing.assert_array_equal(weights[~inside], 0.0)


def test_explain_runs_in_a_fresh_process_without_keras_seqrec(tmp_path):
    path = export(small("gru"), tmp_path)
    script = textwrap.dedent("""
        import json, sys
        import tensorflow as tf
        explain = tf.saved_model.load(sys.argv[1]).signatures["explain"]
        out = explain(history=tf.constant([["101", "105", "110"], ["", "", "107"]]))
        assert "keras_seqrec" not in sys.modules
        print(json.dumps({"ids": out["item_ids"].numpy().astype(str).tolist(),
                          "weights": out["weights"].numpy().tolist()}))
    """)
    result = subprocess.run([sys.executable, "-c", script, path], capture_output=True,
                            text=True, check=True)
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    ours = Recommender(path).explain([["101", "105", "110"], ["107"]])
    assert fresh["ids"][0] == list(ours[0][0]) and fresh["ids"][1] == list(ours[1][0])
    np.testing.assert_allclose(fresh["weights"][0], ours[0][2], atol=1e-6)
    np.testing.assert_allclose(fresh["weights"][1][2], ours[1][2][0], atol=1e-6)
    assert fresh["weights"][1][:2] == [0.0, 0.0]


def test_attention_weights_are_faithful_on_real_data(ml_small_data, tmp_path):
    """Leaving out the history item with the highest attention lowers the score of the
    recommended item more than leaving out the one with the lowest, far more often than the
    half of the users that chance gives (0.85 of 400 users when this test was written)."""
    data = ml_small_data
    keras.utils.set_random_seed(0)
    model = ks.build_model("gru_attention", data.num_items, data.max_len)
    ks.fit_recommender(model, data, epochs=3, verbose=0)
    path = export_saved_model(model, data.vocabulary, tmp_path / "m",
                              item_counts=data.item_counts())
    histories = [[str(i) for i in data.vocabulary.to_ids(h[-data.max_len:])]
                 for h in data.test.history if len(h) >= 3][:400]
    import tensorflow as tf

    answers = Recommender(path).explain(histories, k=1)
    scores = tf.saved_model.load(path).signatures["score_all"]
    pairs, columns = [], []
    for history, (ids, _, weights) in zip(histories, answers):
        high, low = int(np.argmax(weights)), int(np.argmin(weights))
        if high == low:
            continue
        for left_out in (high, low):
            pairs.append(history[:left_out] + history[left_out + 1:])
        columns.append(int(data.vocabulary.lookup([ids[0]])[0]) - 1)  # its score_all column
    width = max(len(p) for p in pairs)
    padded = tf.constant([p + [""] * (width - len(p)) for p in pairs])
    left = scores(history=padded)["scores"].numpy()
    rows = np.arange(len(columns))
    without_high = left[2 * rows, columns]
    without_low = left[2 * rows + 1, columns]
    wins = int(np.sum(without_high < without_low))
    assert len(columns) >= 300
    assert wins / len(columns) > 0.7
    assert stats.binomtest(wins, len(columns), 0.5, alternative="greater").pvalue < 1e-10


def test_recommend_cli_explains(tmp_path, capsys):
    from keras_seqrec import cli

    path = export(small("gru_attention"), tmp_path)
    assert cli.main(["recommend", "--model-dir", path, "--history", "101,105,110",
                     "--explain", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "why" in out and "(attention)" in out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith(("+", "-"))]
    assert {line[1] for line in lines} == {"101", "105", "110"}
    weights = [float(line[0]) for line in lines]
    assert weights == sorted(weights, reverse=True) and abs(sum(weights) - 1) < 1e-3


@pytest.mark.parametrize("k", [0, 6])
def test_explain_refuses_k_outside_the_export(tmp_path, k):
    with pytest.raises(ValueError, match="1..5"):
        Recommender(export(small("gru"), tmp_path)).explain(HISTORIES, k=k)
