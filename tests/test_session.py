"""One-event sessions: the recurrent models' constant-size state, in Python and exported."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_seqrec as ks
from keras_seqrec.export import Recommender, export_saved_model
from keras_seqrec.models import last_position_model
from keras_seqrec.models.session import RecurrentSession

NUM_ITEMS, MAX_LEN = 30, 8

SUPPORTED = [
    ("gru", {}),
    ("lstm", {"num_layers": 2}),
    ("rnn", {}),
    ("gru4rec", {"num_layers": 2}),
    ("gru_attention", {}),
    ("gru_attention", {"decoder": "tanh", "num_layers": 1}),
    ("gru_attention", {"num_layers": 3, "hidden_dim": 12, "tie_embeddings": False}),
    ("gru_attention", {"use_attention": False}),
    ("gru_attention", {"attend_to": "states", "num_layers": 2}),
]


def perturbed(name, **options):
    """A small model whose weights are moved off their initial values (zero-initialised
    projections would hide a wrong attention path)."""
    keras.utils.set_random_seed(1)
    if name != "gru4rec":
        options.setdefault("hidden_dim", 8)
    model = ks.build_model(name, NUM_ITEMS, MAX_LEN, embedding_dim=8, **options)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(np.asarray(w.numpy()) + rng.normal(0, 0.3, w.shape).astype("float32"))
    return model


def sessions(seed=0, n=5, length=MAX_LEN):
    """Item indices per step, with unknown events (0) inside and at the start of sessions."""
    rng = np.random.default_rng(seed)
    items = rng.integers(1, NUM_ITEMS + 1, (n, length))
    items[1, 2] = 0
    items[2, :3] = 0
    items[3, :] = 0  # a session that never gets a known event
    return items


def windows(items, t):
    """Each session's known events up to step t, left-padded as the full model reads them."""
    x = np.zeros((len(items), MAX_LEN), dtype=np.int32)
    for b, row in enumerate(items[:, :t + 1]):
        known = row[row > 0][-MAX_LEN:]
        x[b, MAX_LEN - len(known):] = known
    return x


@pytest.mark.parametrize("name,options", SUPPORTED,
                         ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}"
                              for n, o in SUPPORTED])
def test_one_event_updates_give_the_full_history_scores(name, options):
    model = perturbed(name, **options)
    session, full = RecurrentSession(model), last_position_model(model)
    items = sessions()
    state = session.initial_state(len(items))
    for t in range(items.shape[1]):
        state, logits = session.step(state, items[:, t])
        x = windows(items, t)
        expected = full.predict_on_batch(x)
        live = (x > 0).any(axis=1)
        np.testing.assert_allclose(np.asarray(logits)[live, 1:], expected[live, 1:], atol=1e-5)
        np.testing.assert_array_equal(np.asarray(session.events(state)), (x > 0).sum(axis=1))
    # A session with no known event is still the empty state.
    np.testing.assert_array_equal(np.asarray(state)[3], 0.0)


def test_models_without_a_constant_size_state_say_why():
    with pytest.raises(ValueError, match="self-attention.*full-history"):
        RecurrentSession(ks.build_model("sasrec", NUM_ITEMS, MAX_LEN, embedding_dim=8))
    with pytest.raises(ValueError, match="query='position'.*query='learned'"):
        RecurrentSession(ks.build_model("gru_attention", NUM_ITEMS, MAX_LEN, query="position"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    vocab = ks.Vocabulary([str(i) for i in range(100, 100 + NUM_ITEMS)])
    model = perturbed("gru_attention")
    counts = np.r_[0, np.arange(NUM_ITEMS)[::-1]].astype(np.float64)
    path = export_saved_model(model, vocab, tmp_path_factory.mktemp("session") / "m", top_k=5,
                              item_counts=counts)
    return vocab, path


SESSION_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    step, start = loaded.signatures["session_step"], loaded.signatures["session_start"]
    serve = loaded.signatures["serving_default"]
    events = json.loads(sys.argv[2])  # (sessions, steps) raw ids
    out = start(history=tf.constant([[""] for _ in events]))
    state, seen = out["state"], out["seen"]
    report = {"step": [], "full": [], "start": []}
    for t in range(len(events[0])):
        out = step(state=state, seen=seen, item_id=tf.constant([e[t] for e in events]))
        state, seen = out["state"], out["seen"]
        history = tf.constant([e[:t + 1] for e in events])
        full = serve(history=history)
        restart = start(history=history)
        for key, answer in (("step", out), ("full", full), ("start", restart)):
            report[key].append([answer["item_ids"].numpy().astype(str).tolist(),
                                answer["scores"].numpy().tolist()])
    assert "keras_seqrec" not in sys.modules
    print(json.dumps(report))
""")


def test_exported_session_signatures_answer_as_the_full_history_in_a_fresh_process(exported):
    vocab, path = exported
    items = sessions(seed=3)
    events = [[str(vocab.ids[i - 1]) if i else "unknown-id" for i in row] for row in items]
    result = subprocess.run([sys.executable, "-c", SESSION_SCRIPT, path, json.dumps(events)],
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for step, full, start in zip(report["step"], report["full"], report["start"]):
        assert step[0] == full[0] == start[0]  # the same items, in the same order
        np.testing.assert_allclose(np.array(step[1]), np.array(full[1]), atol=1e-5)
        np.testing.assert_allclose(np.array(start[1]), np.array(full[1]), atol=1e-5)
    # The session without a known event got the popular items, and seen items never came back.
    assert report["step"][-1][0][3] == [str(i) for i in range(100, 105)]
    for b, row in enumerate(events):
        for t in range(len(row)):
            assert not set(row[:t + 1]) & set(report["step"][t][0][b])


def test_model_card_lists_the_signatures_and_the_state_size(exported, tmp_path):
    vocab, path = exported
    card = Recommender(path).model_card["serving"]["signatures"]
    assert set(card) == {"serving_default", "score_all", "explain", "session_step",
                         "session_start"}
    assert card["explain"] == "attention"
    # hidden 8 (two GRU layers) + events + attention's maximum, denominator and numerator.
    assert card["session_step"] == {"state_size": 8 + 8 + 1 + 2 + 8, "seen_size": MAX_LEN}
    sasrec = ks.build_model("sasrec", NUM_ITEMS, MAX_LEN, embedding_dim=8)
    counts = np.ones(NUM_ITEMS + 1)
    card = Recommender(export_saved_model(sasrec, vocab, tmp_path / "s", top_k=5,
                                          item_counts=counts)
                       ).model_card["serving"]["signatures"]
    assert card["explain"] == "leave_one_out"
    assert card["session_step"].startswith("not available: 'sasrec' is a self-attention")
