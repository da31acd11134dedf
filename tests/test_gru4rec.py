"""The mistakes Hidasi & Czapp (RecSys 2023) found in third-party GRU4Rec versions, as tests."""

import numpy as np
import pandas as pd
import pytest
from keras import ops

import keras_seqrec as ks
from keras_seqrec.evaluation import evaluate_recommender
from keras_seqrec.losses import SoftmaxCrossEntropy
from keras_seqrec.testing import deterministic_log


def session_log():
    # User 1 has two sessions (a gap of 5,000 s > 1,800 s); user 2 one session.
    rows = [(1, 10, 0), (1, 11, 60), (1, 12, 120), (1, 13, 180),
            (1, 20, 5180), (1, 21, 5240), (1, 22, 5300), (1, 23, 5360),
            (2, 10, 0), (2, 12, 30), (2, 14, 90), (2, 11, 120)]
    return ks.datasets.from_dataframe(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def test_hidden_state_is_reset_at_session_boundaries_in_training_and_evaluation():
    data = ks.prepare(session_log(), max_len=6, session_gap=1800)
    assert data.users.tolist() == ["1:0", "1:1", "2:0"]
    first, second = set(data.vocabulary.lookup([10, 11, 12, 13])), set(
        data.vocabulary.lookup([20, 21, 22, 23]))
    # Training: no input row mixes the two sessions of user 1.
    inputs, targets = data.training_arrays()
    for row in inputs:
        real = set(row[row != 0].tolist())
        assert not (real & first and real & second)
    # Evaluation: the second session's input holds only its own items.
    row = data.test.users.tolist().index("1:1")
    assert set(data.test.history[row].tolist()) <= second
    # And the model's state starts from zero for each session: the second session's scores do
    # not depend on what came before it.
    model = ks.build_model("gru4rec", data.num_items, data.max_len, hidden_dim=8)
    alone = data.test.inputs(data.max_len)[row:row + 1]
    assert np.count_nonzero(alone) == 3
    scores = ops.convert_to_numpy(model(alone, training=False))[0, -1]
    other = alone.copy()
    other[0, :3] = data.vocabulary.lookup([10, 11, 12])  # as if session 1 preceded it
    assert not np.allclose(ops.convert_to_numpy(model(other, training=False))[0, -1], scores)


def test_outputs_are_raw_scores_and_softmax_is_applied_once_in_the_loss():
    model = ks.build_model("gru4rec", 20, 5, hidden_dim=8)
    x = np.array([[0, 1, 2, 3, 4]], "int32")
    y = np.array([[0, 2, 3, 4, 5]], "int32")
    logits = ops.convert_to_numpy(model(x, training=False))
    # Not probabilities: the model has no softmax of its own.
    assert not np.allclose(np.exp(logits[..., 1:]).sum(-1), 1.0)
    assert (logits[..., 1:] < 0).any()
    log_softmax = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
        -1, keepdims=True)) - logits.max(-1, keepdims=True)
    expected = -np.mean([log_softmax[0, t, y[0, t]] for t in range(1, 5)])
    loss = float(SoftmaxCrossEntropy()(ops.array(y), ops.array(logits)))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_dropout_is_a_drop_probability():
    x = np.tile(np.arange(1, 6, dtype="int32"), (4, 1))
    keep_all = ks.build_model("gru4rec", 10, 5, hidden_dim=16, dropout=0.0)
    a = ops.convert_to_numpy(keep_all(x, training=True))
    b = ops.convert_to_numpy(keep_all(x, training=True))
    np.testing.assert_array_equal(a, b)  # dropout=0 drops nothing, even in training
    drop_most = ks.build_model("gru4rec", 10, 5, hidden_dim=16, dropout=0.9)
    layer = drop_most.get_layer("gru_0_dropout")
    assert layer.rate == 0.9
    hidden = ops.convert_to_numpy(layer(np.ones((100, 100), "float32"), training=True))
    assert 0.85 < (hidden == 0).mean() < 0.95  # 90% dropped, not 10%


def test_last_partial_minibatch_is_not_dropped():
    data = ks.prepare(deterministic_log(num_users=101, num_items=20, length=7),
                      max_len=5)
    inputs, targets = data.training_arrays()
    batches = data.training_batches(batch_size=10, seed=0)
    seen_rows, seen_targets = 0, 0
    for i in range(len(batches)):
        x, y = batches[i]
        seen_rows += len(x)
        seen_targets += int((y != 0).sum())
    assert len(batches) == 11
    assert seen_rows == len(inputs) and seen_targets == int((targets != 0).sum())


def test_items_unseen_in_training_do_not_break_evaluation():
    rows = [(u, i, t) for u in range(30) for t, i in enumerate([1, 2, 3, 4, 5])]
    rows += [(0, 99, 10)]  # item 99 exists only as user 0's test target
    log = ks.datasets.from_dataframe(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    data = ks.prepare(log, max_len=4)
    unseen = data.vocabulary.lookup([99])[0]
    assert data.item_counts()[unseen] == 0 and unseen in data.test.targets
    model = ks.build_model("gru4rec", data.num_items, data.max_len, hidden_dim=8)
    ks.training.fit_recommender(model, data, epochs=1, verbose=0,
                                loss=ks.losses.BPRMax(num_negatives=4, alpha=0.75))
    metrics = evaluate_recommender(model, data, "test", cutoffs=[10])
    assert metrics["examples"] == 30 and 0.0 <= metrics["ndcg@10"] <= 1.0
