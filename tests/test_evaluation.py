"""Full-ranking metrics, baselines and the leak-free evaluation protocol."""

import warnings

import numpy as np
import pandas as pd
import pytest

import keras_seqrec as ks
from keras_seqrec.baselines import MarkovBaseline, PopularityBaseline
from keras_seqrec.data import EvalSplit, Sequences
from keras_seqrec.evaluation import (
    evaluate_recommender,
    finite_scores,
    mask_seen,
    ranking_metrics,
    target_ranks,
    top_k_items,
)


def test_ranks_by_hand_with_pessimistic_ties():
    scores = np.array([
        # pad, items 1..4
        [100.0, 0.9, 0.5, 0.7, 0.1],  # target 3 (0.7): only item 1 is above -> rank 1
        [100.0, 0.2, 0.2, 0.2, 0.2],  # all tied: target 2 ranks below the 3 others -> 3
        [0.0, 0.1, 0.3, 0.3, 0.9],  # target 2 tied with 3, item 4 above -> 2
    ])
    ranks = target_ranks(scores, np.array([3, 2, 2]))
    assert ranks.tolist() == [1, 3, 2]
    m = ranking_metrics(ranks, cutoffs=[1, 3, 10])
    assert m["hr@1"] == 0.0
    assert m["hr@3"] == pytest.approx(2 / 3)
    # NDCG@3: (1/log2(3) + 0 + 1/log2(4)) / 3 ; MRR@3: (1/2 + 0 + 1/3) / 3
    assert m["ndcg@3"] == pytest.approx((1 / np.log2(3) + 0.5) / 3)
    assert m["mrr@3"] == pytest.approx((0.5 + 1 / 3) / 3)
    # K larger than the catalogue (4 items): every target is a hit.
    assert m["hr@10"] == 1.0
    assert m["mrr@10"] == pytest.approx((0.5 + 0.25 + 1 / 3) / 3)


def slow_reference(scores, targets, k):
    """Independent implementation: sort each row, find the target, ties against it."""
    hr, ndcg, mrr = [], [], []
    for row, target in zip(scores, targets):
        items = sorted(range(1, len(row)), key=lambda i: (-row[i], i == target))
        rank = items.index(target)
        hr.append(rank < k)
        ndcg.append(1 / np.log2(rank + 2) if rank < k else 0.0)
        mrr.append(1 / (rank + 1) if rank < k else 0.0)
    return np.mean(hr), np.mean(ndcg), np.mean(mrr)


def test_metrics_match_a_slow_reference_on_random_scores():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, size=(200, 51)).astype(np.float32)  # many ties
    targets = rng.integers(1, 51, size=200)
    ranks = target_ranks(scores, targets)
    for k in (1, 5, 10, 50, 100):
        got = ranking_metrics(ranks, [k])
        hr, ndcg, mrr = slow_reference(scores, targets, k)
        assert got[f"hr@{k}"] == pytest.approx(hr)
        assert got[f"ndcg@{k}"] == pytest.approx(ndcg)
        assert got[f"mrr@{k}"] == pytest.approx(mrr)


class Oracle:
    """Puts the true target first (it is told the targets: for testing the metric only)."""

    def __init__(self, size, targets):
        self.size, self.targets, self.offset = size, targets, 0

    def score(self, inputs):
        scores = np.zeros((len(inputs), self.size), np.float32)
        scores[np.arange(len(inputs)), self.targets[self.offset:self.offset + len(inputs)]] = 1
        self.offset += len(inputs)
        return scores


class Constant:
    def __init__(self, size, padding_score=0.0):
        self.size, self.padding_score = size, padding_score

    def score(self, inputs):
        scores = np.ones((len(inputs), self.size), np.float32)
        scores[:, 0] = self.padding_score
        return scores


def test_oracle_gets_hr1_one_and_constant_model_no_better_than_chance(ml_small_data):
    data = ml_small_data
    oracle = Oracle(data.vocabulary.size, data.test.targets)
    assert evaluate_recommender(oracle, data, "test", cutoffs=[1], batch_size=100)["hr@1"] == 1.0
    m = evaluate_recommender(Constant(data.vocabulary.size), data, "test", cutoffs=[10])
    chance = 10 / data.num_items
    assert m["hr@10"] <= chance and m["ndcg@10"] <= chance


def test_standard_errors_are_those_of_the_per_user_values(ml_small_data):
    from keras_seqrec.evaluation import ranking_standard_errors

    ranks = np.array([0, 0, 1, 3, 20, 2])
    se = ranking_standard_errors(ranks, cutoffs=[2])
    hits = np.array([1, 1, 1, 0, 0, 0], float)
    ndcg = np.array([1, 1, 1 / np.log2(3), 0, 0, 0])
    assert se["hr@2_se"] == pytest.approx(hits.std(ddof=1) / np.sqrt(6))
    assert se["ndcg@2_se"] == pytest.approx(ndcg.std(ddof=1) / np.sqrt(6))
    pop = PopularityBaseline(ml_small_data)
    plain = evaluate_recommender(pop, ml_small_data, cutoffs=[10])
    with_se = evaluate_recommender(pop, ml_small_data, cutoffs=[10], standard_errors=True)
    assert "ndcg@10_se" not in plain and set(with_se) - set(plain) == {
        "hr@10_se", "ndcg@10_se", "mrr@10_se"}
    assert 0 < with_se["ndcg@10_se"] < with_se["ndcg@10"]  # a real, nonzero spread


def test_padding_is_never_in_the_top_k():
    scores = np.array([[1e9, 0.0, 0.1, 0.2], [np.inf, 3.0, 2.0, 1.0]])
    top = top_k_items(scores, 10)
    assert 0 not in top
    assert top.tolist() == [[3, 2, 1], [1, 2, 3]]
    # A model that puts all its weight on padding still ranks only real items.
    log = ks.datasets.from_dataframe(pd.DataFrame(
        {"user": [1] * 4 + [2] * 4, "item": [1, 2, 3, 4] * 2, "timestamp": range(8)}))
    data = ks.prepare(log, max_len=3)
    m = evaluate_recommender(Constant(data.vocabulary.size, padding_score=1e9), data, cutoffs=[4])
    assert m["hr@4"] == 1.0  # 4 real items, K = 4: the target is always in


def test_exclude_seen_masks_the_history_whatever_the_target():
    scores = np.array([[0.0, 5.0, 4.0, 3.0, 2.0]])
    history = Sequences.from_lists([[1, 2]])
    masked = mask_seen(scores, history)
    assert masked[0, 1] == masked[0, 2] == -np.inf  # every seen item, whatever the answer
    assert target_ranks(masked, np.array([3])).tolist() == [0]

    log = ks.datasets.from_dataframe(pd.DataFrame(
        {"user": [1, 1, 1, 1], "item": [1, 2, 3, 4], "timestamp": range(4)}))
    data = ks.prepare(log, max_len=3)

    class PrefersSeen:
        def score(self, inputs):  # ranks items 1, 2, 3 above the test target 4
            return np.array([[-np.inf, 9.0, 8.0, 7.0, 1.0]] * len(inputs))

    assert evaluate_recommender(PrefersSeen(), data, cutoffs=[1])["hr@1"] == 0.0
    assert evaluate_recommender(PrefersSeen(), data, cutoffs=[1], exclude_seen=True)["hr@1"] == 1.0


def test_a_repeat_target_is_masked_counted_and_reported():
    # User 1 consumes item 7 again as its test target: 5 7 6 7.
    log = ks.datasets.from_dataframe(pd.DataFrame(
        {"user": [1] * 4 + [2] * 4, "item": [5, 7, 6, 7, 5, 6, 8, 9], "timestamp": range(8)}))
    data = ks.prepare(log, max_len=4)
    seven = int(data.vocabulary.lookup([7])[0])

    class LovesSeven:
        def score(self, inputs):
            scores = np.zeros((len(inputs), data.vocabulary.size), np.float32)
            scores[:, seven] = 10.0
            return scores

    plain = evaluate_recommender(LovesSeven(), data, cutoffs=[1])
    masked = evaluate_recommender(LovesSeven(), data, cutoffs=[1], exclude_seen=True)
    assert plain["repeat_targets"] == masked["repeat_targets"] == 0.5
    assert plain["hr@1"] == 0.5  # user 1's repeat is a hit when nothing is masked
    # Masked: the mask cannot know that 7 is the answer, so the repeat target is a miss.
    assert masked["hr@1"] == 0.0


def test_non_finite_scores_rank_last_never_first():
    scores = np.array([[0.0, np.nan, 1.0, 2.0], [0.0, 1.0, np.inf, np.nan]])
    assert target_ranks(scores, np.array([1, 3])).tolist() == [2, 2]
    log = ks.datasets.from_dataframe(pd.DataFrame(
        {"user": [1] * 4 + [2] * 4, "item": [1, 2, 3, 4] * 2, "timestamp": range(8)}))
    data = ks.prepare(log, max_len=3)

    class Diverged:
        def score(self, inputs):
            return np.full((len(inputs), data.vocabulary.size), np.nan, np.float32)

    metrics = evaluate_recommender(Diverged(), data, cutoffs=[2])  # 4 items: the target is last
    assert metrics["hr@2"] == 0.0 and metrics["ndcg@2"] == 0.0


def test_sampled_metrics_need_asking_and_warn(ml_small_data):
    pop = PopularityBaseline(ml_small_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = evaluate_recommender(pop, ml_small_data, cutoffs=[10])  # no warning by default
    with pytest.warns(UserWarning, match="overstate"):
        sampled = evaluate_recommender(pop, ml_small_data, cutoffs=[10], num_negatives=100)
    assert sampled["hr@10"] > full["hr@10"]


def test_validation_never_uses_test_targets(ml_small_data):
    data = ml_small_data
    rng = np.random.default_rng(0)
    corrupted = ks.SequenceDataset(**{
        **data.__dict__,
        "test": data.test.with_targets(rng.integers(1, data.num_items + 1, len(data.test))),
    })
    for baseline in (PopularityBaseline, MarkovBaseline):
        before = evaluate_recommender(baseline(data), data, "validation", cutoffs=[10])
        after = evaluate_recommender(baseline(corrupted), corrupted, "validation", cutoffs=[10])
        assert before == after
    # And the training data does not contain any user's test target at its test position.
    rows = np.searchsorted(data.users, data.test.users)
    assert np.array_equal(data.train.take(rows).lengths, data.test.history.lengths - 1)


def test_markov_baseline_counts_transitions_and_backs_off_to_popularity():
    log = ks.datasets.from_dataframe(pd.DataFrame({
        "user": [1, 1, 1, 1, 1, 2, 2, 2, 2],
        "item": [10, 20, 10, 30, 99, 20, 30, 40, 98],
        "timestamp": range(9),
    }))
    data = ks.prepare(log, max_len=4)
    # Train: user 1 = 10 20 10, user 2 = 20 30. Transitions: 10->20, 20->10, 20->30.
    idx = dict(zip([10, 20, 30, 40, 98, 99], data.vocabulary.lookup([10, 20, 30, 40, 98, 99])))
    markov = MarkovBaseline(data)
    scores = markov.score(np.array([[0, 0, 0, idx[20]], [0, 0, 0, idx[40]]]))
    # After 20: 10 and 30 once each, tie broken by popularity (10 appears twice, 30 once).
    assert top_k_items(scores[:1], 2).tolist() == [[idx[10], idx[30]]]
    # 40 never appears in training: fall back to popularity (10: 2, 20: 2, 30: 1).
    assert top_k_items(scores[1:], 3)[0, 2] == idx[30]
    assert set(top_k_items(scores[1:], 2)[0].tolist()) == {idx[10], idx[20]}
    assert np.isneginf(scores[:, 0]).all()


def test_eval_split_helpers():
    split = EvalSplit("test", np.array([1]), Sequences.from_lists([[1, 2, 3]]), np.array([4]))
    assert split.inputs(2).tolist() == [[2, 3]]
    assert len(split) == 1


def test_a_keras_model_scored_in_length_order_gets_each_example_its_own_rank(ml_small_data):
    """Examples are batched by history length for speed; every rank must still be the rank of
    that example's own target, as scoring the split in order gives."""
    import keras

    from keras_seqrec.models.common import last_position_model

    data = ml_small_data
    keras.utils.set_random_seed(0)
    model = ks.build_model("sasrec", data.num_items, data.max_len, embedding_dim=8)
    split = data.split("validation")
    inputs = split.inputs(data.max_len)
    assert len(set((inputs != 0).sum(axis=1))) > 5  # lengths differ: the order changes
    scores = np.asarray(last_position_model(model).predict(inputs, verbose=0))
    scores = mask_seen(scores, split.history)
    want = ranking_metrics(target_ranks(scores, split.targets), [1, 10, 50])
    got = evaluate_recommender(model, data, "validation", cutoffs=[1, 10, 50], exclude_seen=True,
                               batch_size=64)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_paired_comparison_is_the_mean_difference_over_the_same_users(ml_small_data):
    from keras_seqrec.evaluation import paired_comparison, per_user_values

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 30, 500), rng.integers(0, 30, 500)
    out = paired_comparison(a, b, "ndcg@10")
    d = per_user_values(a, "ndcg@10") - per_user_values(b, "ndcg@10")
    assert out["difference"] == pytest.approx(d.mean())
    assert out["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(500))
    assert out["difference"] == pytest.approx(
        ranking_metrics(a, cutoffs=[10])["ndcg@10"] - ranking_metrics(b, cutoffs=[10])["ndcg@10"])
    same = paired_comparison(a, a)
    assert same["difference"] == 0.0 and same["p"] == 1.0
    # markov against pop on ml-latest-small: the paired error is below the two metrics' own.
    m, markov = evaluate_recommender(MarkovBaseline(ml_small_data), ml_small_data, "test",
                                     cutoffs=[10], standard_errors=True, return_ranks=True)
    p, pop = evaluate_recommender(PopularityBaseline(ml_small_data), ml_small_data, "test",
                                  cutoffs=[10], standard_errors=True, return_ranks=True)
    vs = paired_comparison(markov, pop)
    assert vs["difference"] == pytest.approx(m["ndcg@10"] - p["ndcg@10"])
    assert vs["se"] < (m["ndcg@10_se"] ** 2 + p["ndcg@10_se"] ** 2) ** 0.5
    assert vs["p"] < 0.01
    with pytest.raises(ValueError, match="same examples"):
        paired_comparison(a, b[:-1])


def test_device_ranking_follows_the_host_rules_on_hand_made_scores():
    from keras_seqrec.evaluation import _DeviceRanking

    scores = np.array([
        # pad, items 1..5
        [9e9, 0.9, 0.5, 0.7, 0.1, 0.7],       # tie with item 5 counts against target 3
        [np.inf, 0.2, np.nan, 0.3, np.inf, 0.0],  # NaN target ranks last; +inf is -inf
        [0.0, 0.1, 0.3, 0.3, 0.9, -np.inf],   # target 4 is seen: masked, so last
        [0.0, 5.0, 4.0, 3.0, 2.0, 1.0],       # seen items 1 and 2 leave the ranking
    ], dtype=np.float32)
    targets = np.array([3, 2, 4, 3])
    seen = Sequences.from_lists([[], [1], [4, 2], [1, 2, 1]])
    for history in (None, seen):
        padded = None if history is None else history.pad(4)
        ranks, top = _DeviceRanking(3)(scores, targets, padded)
        host = finite_scores(scores)
        if history is not None:
            host = mask_seen(host, history)
        assert np.asarray(ranks).tolist() == target_ranks(host, targets).tolist()
        # Without top-K lists (what the per-epoch validation asks for) the ranks agree too.
        alone, _ = _DeviceRanking(0)(scores, targets, padded)
        assert np.asarray(alone).tolist() == target_ranks(host, targets).tolist()
        assert (np.asarray(top) != 0).all()  # padding is never recommended
        best = np.take_along_axis(host, np.asarray(top), axis=1)
        assert (np.diff(best, axis=1) <= 0).all()  # best first
        # The k-th best score equals the host's (which item wins a tie is not fixed).
        host_best = np.take_along_axis(host, top_k_items(host, 3), axis=1)
        np.testing.assert_array_equal(best, host_best)


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_device_ranking_gives_the_host_path_s_ranks_and_metrics(ml_small_data, exclude_seen):
    import keras

    from keras_seqrec.evaluation import KerasScorer

    data = ml_small_data
    keras.utils.set_random_seed(0)
    model = ks.build_model("gru", data.num_items, data.max_len, embedding_dim=16, hidden_dim=16)
    ks.fit_recommender(model, data, epochs=1, verbose=0)

    kwargs = dict(cutoffs=(1, 10), exclude_seen=exclude_seen, standard_errors=True,
                  return_ranks=True)
    device, device_ranks = evaluate_recommender(model, data, "validation", **kwargs)
    host_scorer = KerasScorer(model, rank_on_device=False)  # NumPy ranks the same batches
    host, host_ranks = evaluate_recommender(host_scorer, data, "validation", **kwargs)
    np.testing.assert_array_equal(device_ranks, host_ranks)
    assert device == host
    # What the validation after each epoch runs: the same ranks, no top-K lists.
    kwargs["coverage"] = False
    quick, quick_ranks = evaluate_recommender(model, data, "validation", **kwargs)
    np.testing.assert_array_equal(quick_ranks, device_ranks)
    assert quick == {k: v for k, v in device.items() if not k.startswith("coverage")}
